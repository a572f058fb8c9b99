//! DETR pieces HOICLIP inherits: ResNet-50 backbone with frozen batch norm, sine position
//! encoding, post-norm transformer encoder and decoder layers.

pub mod backbone;
pub mod position;
pub mod transformer;
