//! The render pipeline: a state's own objects, then the cross-cutting edits.

use crate::edits::Edits;
use crate::objects::ObjectKey;
use crate::state::{RenderContext, RenderError, State};
use kube::core::DynamicObject;
use std::collections::BTreeSet;

/// Every object of state `S` for the policy in `ctx`, edited and ready to apply; `None` when
/// the state's section is absent.
pub fn render_state<S: State>(ctx: &RenderContext<'_>) -> Result<Option<Vec<DynamicObject>>, RenderError> {
    let Some(spec) = S::spec(ctx.policy) else {
        return Ok(None);
    };
    let mut objects = S::render(spec, ctx)?;
    let kinds = S::kinds();
    let edits = Edits { state: S::NAME, policy: ctx.policy, image: S::image(spec), needs_driver: S::NEEDS_DRIVER };
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
    }
    Ok(Some(objects))
}
