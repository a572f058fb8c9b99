//! Verb rows from example images by visual semantic arithmetic: HOICLIP's generator of
//! `verb.pth` (reference 1.7), on whatever annotated examples are at hand.
//!
//! For each HOI class, the normalised sum of its union-crop features, minus the normalised
//! sum of its object's crop features, is what the verb adds to the object; a verb's row is
//! the normalised mean of that over its classes. The official generator runs this once
//! over the whole training set, so its object sums hold every annotation of every verb;
//! here the sums hold the examples given (see the README for what that changes).

/// CLIP image embeddings (`encode_image`, not normalised) of one annotated example.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleFeatures {
    /// Which image the example comes from: the person row gets each image's mean
    /// human-crop feature once.
    pub image: usize,
    /// HOI class of the example.
    pub hoi: usize,
    pub human: Vec<f32>,
    pub object: Vec<f32>,
    pub union: Vec<f32>,
}

/// The union of two `[x1, y1, x2, y2]` boxes.
pub fn union_box(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    [
        a[0].min(b[0]),
        a[1].min(b[1]),
        a[2].max(b[2]),
        a[3].max(b[3]),
    ]
}

fn add(sum: &mut [f32], v: &[f32], scale: f32) {
    for (s, x) in sum.iter_mut().zip(v) {
        *s += scale * x;
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// One row per verb (`None` for a verb without examples), from `examples` of classes whose
/// verb and object are `hoi_verb[c]` and `hoi_object[c]` (object 0 is the person).
pub fn verb_rows(
    examples: &[ExampleFeatures],
    hoi_verb: &[usize],
    hoi_object: &[usize],
    num_verbs: usize,
) -> Vec<Option<Vec<f32>>> {
    let Some(dim) = examples.first().map(|e| e.union.len()) else {
        return vec![None; num_verbs];
    };
    let num_objects = hoi_object.iter().max().map_or(1, |m| m + 1);
    let mut obj_feat = vec![vec![0f32; dim]; num_objects];
    let mut hoi_feat = vec![vec![0f32; dim]; hoi_verb.len()];
    let mut seen = vec![false; hoi_verb.len()];
    for e in examples {
        add(&mut obj_feat[hoi_object[e.hoi]], &e.object, 1.0);
        add(&mut hoi_feat[e.hoi], &e.union, 1.0);
        seen[e.hoi] = true;
    }
    let mut images: Vec<usize> = examples.iter().map(|e| e.image).collect();
    images.sort_unstable();
    images.dedup();
    for image in images {
        let humans: Vec<&ExampleFeatures> = examples.iter().filter(|e| e.image == image).collect();
        let scale = 1.0 / humans.len() as f32;
        for e in humans {
            add(&mut obj_feat[0], &e.human, scale);
        }
    }
    let obj_feat: Vec<Vec<f32>> = obj_feat.into_iter().map(normalized).collect();
    let hoi_feat: Vec<Vec<f32>> = hoi_feat.into_iter().map(normalized).collect();
    (0..num_verbs)
        .map(|v| {
            let classes: Vec<usize> = (0..hoi_verb.len())
                .filter(|&c| hoi_verb[c] == v && seen[c])
                .collect();
            if classes.is_empty() {
                return None;
            }
            let mut mean = vec![0f32; dim];
            let scale = 1.0 / classes.len() as f32;
            for c in classes {
                add(&mut mean, &hoi_feat[c], scale);
                add(&mut mean, &obj_feat[hoi_object[c]], -scale);
            }
            Some(normalized(mean))
        })
        .collect()
}

/// Verb rows (by verb id) from the stored examples of one image tower: each distinct
/// (verb, object) pair is a class, the `person` object is object 0 as in HICO-DET, and
/// examples of one image share the person row's mean.
pub fn rows_by_verb(
    examples: &[crate::vocab::store::StoredExample],
    person: Option<i64>,
) -> std::collections::HashMap<i64, Vec<f32>> {
    let mut verbs: Vec<i64> = Vec::new();
    // Object 0 is the person (a placeholder when the vocabulary has none).
    let mut objects: Vec<Option<i64>> = vec![person];
    let mut classes: Vec<(usize, usize)> = Vec::new();
    let mut images: Vec<&str> = Vec::new();
    let features: Vec<ExampleFeatures> = examples
        .iter()
        .map(|e| {
            let verb = dense(&mut verbs, e.verb_id);
            let object = dense(&mut objects, Some(e.object_id));
            ExampleFeatures {
                image: dense(&mut images, e.image.as_str()),
                hoi: dense(&mut classes, (verb, object)),
                human: e.human.clone(),
                object: e.object.clone(),
                union: e.union.clone(),
            }
        })
        .collect();
    let hoi_verb: Vec<usize> = classes.iter().map(|c| c.0).collect();
    let hoi_object: Vec<usize> = classes.iter().map(|c| c.1).collect();
    verb_rows(&features, &hoi_verb, &hoi_object, verbs.len())
        .into_iter()
        .zip(verbs)
        .filter_map(|(row, id)| row.map(|r| (id, r)))
        .collect()
}

/// Index of `key` in `list`, appended if new (dense indices in order of appearance).
fn dense<K: PartialEq>(list: &mut Vec<K>, key: K) -> usize {
    match list.iter().position(|k| *k == key) {
        Some(i) => i,
        None => {
            list.push(key);
            list.len() - 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(
        image: usize,
        hoi: usize,
        human: [f32; 2],
        object: [f32; 2],
        union: [f32; 2],
    ) -> ExampleFeatures {
        ExampleFeatures {
            image,
            hoi,
            human: human.to_vec(),
            object: object.to_vec(),
            union: union.to_vec(),
        }
    }

    #[test]
    fn one_example_gives_the_normalised_difference_of_union_and_object() {
        // Class 0 = (verb 0, object 1); the object row is the object crop alone.
        let rows = verb_rows(
            &[example(0, 0, [0.0, 5.0], [3.0, 0.0], [0.0, 2.0])],
            &[0],
            &[1],
            2,
        );
        let r = rows[0].as_ref().unwrap();
        let expected = [-(0.5f32.sqrt()), 0.5f32.sqrt()];
        assert!(
            (r[0] - expected[0]).abs() < 1e-6 && (r[1] - expected[1]).abs() < 1e-6,
            "{r:?}"
        );
        assert_eq!(rows[1], None, "a verb without examples has no row");
    }

    #[test]
    fn the_person_object_row_adds_each_images_mean_human_crop() {
        // Class 0 = (verb 0, person). Two examples in one image: the person row is the
        // object crops plus the image's mean human crop ([0.5, 0.5]) once.
        let rows = verb_rows(
            &[
                example(0, 0, [1.0, 0.0], [0.0, 1.0], [2.0, 1.0]),
                example(0, 0, [0.0, 1.0], [0.0, 1.0], [2.0, 1.0]),
            ],
            &[0],
            &[0],
            1,
        );
        let person = normalized(vec![0.5, 2.5]);
        let union = normalized(vec![4.0, 2.0]);
        let expected = normalized(vec![union[0] - person[0], union[1] - person[1]]);
        let r = rows[0].as_ref().unwrap();
        assert!(
            r.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-6),
            "{r:?} vs {expected:?}"
        );
    }
}
