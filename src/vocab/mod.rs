//! Vocabularies: the seed packs (HICO-DET, V-COCO) shipped in `models/vocab/`.

pub mod pack;

pub use pack::{Interaction, NamedObject, Pack, PackError, Verb};
