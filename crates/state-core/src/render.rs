//! The render pipeline: a state's own objects, then the cross-cutting edits.

use crate::edits::Edits;
use crate::objects::ObjectKey;
use crate::scope::Scope;
use crate::state::{RenderContext, RenderError, State};
use api::FieldError;
use kube::core::DynamicObject;
use std::collections::BTreeSet;

/// Every object of state `S` for the policy in `ctx` (images completed from `spec.global`),
/// edited and ready to apply; `None` when the state's section is absent.
pub fn render_state<S: State>(ctx: &RenderContext<'_>) -> Result<Option<Vec<DynamicObject>>, RenderError> {
    // Every section's image completed from `spec.global` (the original's precedence).
    let resolved = ctx.policy.with_global_defaults();
    let ctx = &RenderContext { policy: &resolved, ..*ctx };
    let Some(spec) = S::spec(ctx.policy) else {
        return Ok(None);
    };
    let images = S::images(spec);
    for (field, image) in &images {
        api::image::check(field, image)?;
    }
    if let Some(error) = FieldError::join(api::pod_spec::placement(ctx.policy)) {
        return Err(error.into());
    }
    let mut objects = S::render(spec, ctx)?;
    let kinds = S::kinds();
    let image_specs: Vec<&api::ImageSpec> = images.iter().map(|(_, image)| *image).collect();
    let edits = Edits { state: S::NAME, policy: ctx.policy, images: &image_specs, needs_driver: S::NEEDS_DRIVER };
    let mut seen = BTreeSet::new();
    for object in &mut objects {
        let key = ObjectKey::of(object);
        if !kinds.iter().any(|k| k.matches(object)) {
            return Err(RenderError::UndeclaredKind { kind: format!("{}/{}", key.api_version, key.kind) });
        }
        if !seen.insert(key.clone()) {
            return Err(RenderError::Manifest { manifest: key.to_string(), message: "rendered twice".into() });
        }
        edits.apply(object);
        if S::KEPT_KINDS.contains(&key.kind.as_str()) {
            unmanage(object);
        }
    }
    for (field, image) in &images {
        check_container_resources(field, image, &objects)?;
    }
    Ok(Some(objects))
}

/// Takes the state label and the owner references off `object`, an object of a
/// [kept kind](State::KEPT_KINDS): nothing prunes or garbage-collects it.
fn unmanage(object: &mut DynamicObject) {
    if let Some(labels) = object.metadata.labels.as_mut() {
        labels.remove(crate::STATE_LABEL);
    }
    object.metadata.owner_references = None;
}

/// The objects of state `S` for the policy of `scope` (`render_ctx.policy` is its view): a NicNodePolicy's
/// are [confined](crate::scope::confine) to it, and its sections must set their own image
/// (it has no `spec.global`).
pub fn render_in_scope<S: State>(
    render_ctx: &RenderContext<'_>,
    scope: &Scope<'_>,
) -> Result<Option<Vec<DynamicObject>>, RenderError> {
    let Scope::Node(node_policy) = scope else {
        return render_state::<S>(render_ctx);
    };
    if let Some(spec) = S::spec(render_ctx.policy) {
        let image = S::image(spec);
        for (field, value) in [("repository", &image.repository), ("version", &image.version)] {
            if value.is_empty() {
                let path = format!("{}.{field}", S::field_path());
                return Err(api::FieldError::new(path, "required: a NicNodePolicy has no spec.global").into());
            }
        }
    }
    let mut objects = render_state::<S>(render_ctx)?;
    if let Some(objects) = objects.as_mut() {
        crate::scope::confine::<S>(objects, node_policy, &render_ctx.observed.peers)?;
    }
    Ok(objects)
}

/// Every `containerResources` entry must name a container the state renders (a typo would
/// otherwise be silently ignored) and set only cpu and memory, above zero, limits not below
/// requests.
fn check_container_resources(
    section: &str,
    image: &api::ImageSpec,
    objects: &[DynamicObject],
) -> Result<(), RenderError> {
    let containers: BTreeSet<&str> = objects
        .iter()
        .filter_map(|o| o.data.pointer("/spec/template/spec"))
        .flat_map(|pod| ["initContainers", "containers"].map(|list| &pod[list]))
        .filter_map(|list| list.as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for (i, entry) in image.container_resources.iter().flatten().enumerate() {
        if !containers.contains(entry.name.as_str()) {
            let known: Vec<&str> = containers.iter().copied().collect();
            return Err(FieldError::new(
                format!("{section}.containerResources[{i}].name"),
                format!("no container {:?} in this component (containers: {})", entry.name, known.join(", ")),
            )
            .into());
        }
    }
    let entries = image.container_resources.as_deref().unwrap_or_default();
    match FieldError::join(api::validate::container_resources(section, entries)) {
        Some(problems) => Err(problems.into()),
        None => Ok(()),
    }
}
