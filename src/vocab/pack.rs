//! A vocabulary pack: verbs, objects and interactions (verb x object + CLIP prompt) in a
//! fixed index order. The seed packs keep the official order, so the rows of an official
//! checkpoint's classifiers line up one to one.

use serde::{Deserialize, Serialize};

pub(crate) const HICO_DET_JSON: &str = include_str!("../../models/vocab/hico-det.json");
pub(crate) const V_COCO_JSON: &str = include_str!("../../models/vocab/v-coco.json");

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("vocabulary pack is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("vocabulary pack is inconsistent: {0}")]
    Inconsistent(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verb {
    pub index: usize,
    pub name: String,
    /// The -ing phrase used in prompts ("riding", "sitting on").
    pub ing: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedObject {
    pub index: usize,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub index: usize,
    pub verb: usize,
    /// Object index; may equal `objects.len()` for "no object" roles (V-COCO).
    pub object: usize,
    pub prompt: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pack {
    #[serde(default)]
    pub name: String,
    pub verbs: Vec<Verb>,
    pub objects: Vec<NamedObject>,
    /// Prompts of the object classifier rows (the last one is "nothing").
    pub object_prompts: Vec<String>,
    pub interactions: Vec<Interaction>,
    /// Zero-shot splits (HICO-DET's `hico_unseen_index`): split name -> the interactions
    /// (indices) held out of training for it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub zero_shot: std::collections::BTreeMap<String, Vec<usize>>,
    /// The dataset's official verb x object validity matrix (`[verbs][objects]`, 0 or 1),
    /// when its evaluation has one: V-COCO's `corre_vcoco.npy`, which allows far more
    /// cells than the interactions do (agent-only verbs go with every object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct_matrix: Option<Vec<Vec<u8>>>,
}

impl Pack {
    pub fn from_json(name: &str, json: &str) -> Result<Self, PackError> {
        let mut pack: Pack = serde_json::from_str(json)?;
        pack.name = name.to_string();
        pack.validate()?;
        Ok(pack)
    }

    /// The 600 HICO-DET interactions in the official order.
    pub fn hico_det() -> Self {
        Self::from_json("hico-det", HICO_DET_JSON).expect("the embedded HICO-DET pack is valid")
    }

    /// The 263 V-COCO interactions in the official order.
    pub fn v_coco() -> Self {
        Self::from_json("v-coco", V_COCO_JSON).expect("the embedded V-COCO pack is valid")
    }

    fn validate(&self) -> Result<(), PackError> {
        let bad = |m: String| Err(PackError::Inconsistent(m));
        for (i, v) in self.verbs.iter().enumerate() {
            if v.index != i {
                return bad(format!("verb {} has index {}", i, v.index));
            }
        }
        for (i, it) in self.interactions.iter().enumerate() {
            if it.index != i || it.verb >= self.verbs.len() || it.object > self.objects.len() {
                return bad(format!("interaction {i} has a bad index, verb or object"));
            }
        }
        if self.object_prompts.len() < self.objects.len() + 1 {
            return bad("fewer object prompts than objects + 1".into());
        }
        if let Some(m) = &self.correct_matrix
            && (m.len() != self.verbs.len()
                || m.iter()
                    .any(|r| r.len() != self.objects.len() || r.iter().any(|&x| x > 1)))
        {
            return bad("correct_matrix is not verbs x objects of 0 and 1".into());
        }
        for (split, unseen) in &self.zero_shot {
            if unseen.iter().any(|&i| i >= self.interactions.len()) {
                return bad(format!(
                    "zero-shot split {split} names an interaction past the end"
                ));
            }
        }
        Ok(())
    }

    /// Verb index of each interaction.
    pub fn hoi_verb(&self) -> Vec<usize> {
        self.interactions.iter().map(|i| i.verb).collect()
    }

    /// Object index of each interaction.
    pub fn hoi_object(&self) -> Vec<usize> {
        self.interactions.iter().map(|i| i.object).collect()
    }

    /// Name of object `index` ("nothing" past the end: no-object roles).
    pub fn object_name(&self, index: usize) -> &str {
        self.objects
            .get(index)
            .map(|o| o.name.as_str())
            .unwrap_or("nothing")
    }

    /// Whether the official validity matrix allows verb `verb` with object `object` (pack
    /// indices); `None` when the pack has no such matrix.
    pub fn officially_valid(&self, verb: usize, object: usize) -> Option<bool> {
        let m = self.correct_matrix.as_ref()?;
        Some(m.get(verb).and_then(|r| r.get(object)) == Some(&1))
    }

    /// `verb2hoi` as a dense row-major `[V, C]` 0/1 matrix.
    pub fn verb_to_hoi(&self) -> Vec<f32> {
        let c = self.interactions.len();
        let mut m = vec![0f32; self.verbs.len() * c];
        for (i, it) in self.interactions.iter().enumerate() {
            m[it.verb * c + i] = 1.0;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_packs_have_the_official_sizes() {
        let hico = Pack::hico_det();
        assert_eq!(
            (
                hico.verbs.len(),
                hico.objects.len(),
                hico.interactions.len()
            ),
            (117, 80, 600)
        );
        assert_eq!(hico.object_prompts.len(), 81);
        assert_eq!(
            hico.interactions[0].prompt,
            "a photo of a person boarding an airplane"
        );
        let vcoco = Pack::v_coco();
        assert_eq!((vcoco.verbs.len(), vcoco.interactions.len()), (29, 263));
        assert_eq!(vcoco.object_name(80), "nothing");
        // V-COCO's official corre_vcoco.npy: 788 allowed cells, against the 234 its 263
        // interactions give; agent-only verbs go with every object.
        let m = vcoco
            .correct_matrix
            .as_ref()
            .expect("V-COCO ships its matrix");
        assert_eq!(m.iter().flatten().filter(|&&x| x == 1).count(), 788);
        let walk = vcoco.verbs.iter().position(|v| v.name == "walk").unwrap();
        let airplane = vcoco
            .objects
            .iter()
            .position(|o| o.name == "airplane")
            .unwrap();
        assert_eq!(vcoco.officially_valid(walk, airplane), Some(true));
        for it in vcoco.interactions.iter().filter(|it| it.object < 80) {
            assert_eq!(vcoco.officially_valid(it.verb, it.object), Some(true));
        }
        assert_eq!(hico.correct_matrix, None);
        assert_eq!(hico.officially_valid(0, 0), None);
    }

    #[test]
    fn inconsistent_pack_is_refused() {
        let json = r#"{"verbs":[{"index":0,"name":"ride","ing":"riding"}],"objects":[],
            "object_prompts":["a photo of nothing"],
            "interactions":[{"index":0,"verb":3,"object":0,"prompt":"x"}]}"#;
        assert!(matches!(
            Pack::from_json("x", json),
            Err(PackError::Inconsistent(_))
        ));
        assert!(matches!(Pack::from_json("x", "{"), Err(PackError::Json(_))));
    }
}
