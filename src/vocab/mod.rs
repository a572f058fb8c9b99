//! Vocabularies: the seed packs (HICO-DET, V-COCO) shipped in `models/vocab/`.

pub mod pack;
pub mod store;

pub use pack::{Interaction, NamedObject, Pack, PackError, Verb};
