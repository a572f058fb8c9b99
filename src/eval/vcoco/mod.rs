//! V-COCO agent AP and role AP (Scenario 1 and 2), re-implemented from the protocol of the
//! official `vsrl_eval.py` (s-gupta/v-coco @ 489cc4db) as written down in the evaluation-protocol
//! notes, section 2.
//!
//! Decisions where the reference crashes, asserts or is unspecified. The first four only arise in
//! runs the reference cannot complete, so they never change a number it prints:
//! - An entry with `npos > 0` and no scored detection gets AP 0 (reference: `amax` of an empty array).
//! - An entry with `npos == 0` gets AP NaN (reference: the recall assert fails). Role means skip NaN
//!   entries; the agent mean keeps the reference formula `nansum / number of actions`, so there
//!   such an action counts as 0.
//! - A detection in an image without GT persons is a false positive (reference: argmax of an
//!   empty array).
//! - A missing agent score or `(action, role)` key means "no detection" (reference: `KeyError`).
//! - Box coordinates that are NaN or infinite give IoU 0. numpy propagates NaN, so its `>= 0.5`
//!   fails too, and an all-NaN person box matches the first GT person there as here (argmax
//!   returns the first NaN).
//! - Ties in score keep input order (stable sort): split-file order across images, detection order
//!   within an image. The reference's reversed numpy argsort leaves tie order to the implementation.
//! - IoU is computed in f64; the reference uses float32, so only IoUs within ~1e-7 of 0.5 can differ.
//! - Detections whose `image_id` is not a test image are ignored, as in the reference (it loops
//!   over the test images).
//! - Malformed or inconsistent files give [`EvalError::Invalid`] where the reference asserts or
//!   raises: split ids != V-COCO image ids, a label-1 agent entry of `role_object_id` != `ann_id`,
//!   a person labelled 1 twice for one action, a role object that is not a valid object of the
//!   image. We also require `role_name[0] == "agent"` and unique action names.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::EvalError;
use super::json::{Node, Parsed, parse_as};
use crate::eval::ap::{ApMethod, Overlap, Thresholds};

/// Both the person and the role box must reach this IoU (`>=`).
pub(super) const IOU_THRESHOLD: f64 = 0.5;

#[derive(Debug, Clone)]
pub(super) struct Action {
    pub(super) name: String,
    /// Role names, `"agent"` first.
    pub(super) roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub(super) struct GtPerson {
    pub(super) bbox: [f64; 4],
    /// Not in V-COCO's ann_id list: detections matched to this person are skipped.
    pub(super) ignored: bool,
    /// Per action: `None` unless labelled 1, else the GT box of each non-agent role (`None` = no role object).
    pub(super) labels: Vec<Option<Vec<Option<[f64; 4]>>>>,
}

#[derive(Debug, Clone)]
pub(super) struct GtImage {
    pub(super) id: u64,
    pub(super) persons: Vec<GtPerson>,
}

/// Ground truth of the V-COCO test split, from the three official files.
#[derive(Debug, Clone)]
pub struct VcocoGroundTruth {
    pub(super) actions: Vec<Action>,
    /// In split-file order.
    pub(super) images: Vec<GtImage>,
    pub(super) file_ids: HashMap<String, u64>,
}

/// One detection in the official format: a person box with scores per action and per (action, role).
#[derive(Debug, Clone, Default)]
pub struct VcocoDetection {
    pub image_id: u64,
    /// x1, y1, x2, y2 (inclusive pixel corners, like the GT).
    pub person_box: [f64; 4],
    /// action -> score; absent or NaN = no detection for that action.
    pub agent_scores: HashMap<String, f64>,
    /// (action, role) -> (box, score); absent or NaN score = no detection. A box that is all 0.0 or all NaN
    /// means "no role object" (Scenario 1).
    pub role_boxes: HashMap<(String, String), ([f64; 4], f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// A missing GT role object must be predicted as an all-zero or all-NaN box.
    One,
    /// A missing GT role object accepts any predicted box.
    Two,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleAp {
    pub action: String,
    pub role: String,
    /// NaN when `npos == 0`.
    pub ap: f64,
    pub npos: usize,
    /// Scored detections (those matched to an ignored person are not counted).
    pub detections: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VcocoReport {
    /// Per action, in file order; NaN where `npos == 0`.
    pub agent_ap: Vec<(String, f64)>,
    /// `nansum(agent_ap) / number of actions`, the formula vsrl_eval prints.
    pub mean_agent_ap: f64,
    /// One entry per (action, non-agent role), in file order.
    pub scenario_1: Vec<RoleAp>,
    pub scenario_2: Vec<RoleAp>,
    /// Mean over the non-NaN entries, point included (vsrl_eval's `nanmean`).
    pub role_map_s1: f64,
    pub role_map_s2: f64,
    /// Same, without the `point` action (24 entries; an exclusion some works apply).
    pub role_map_s1_no_point: f64,
    pub role_map_s2_no_point: f64,
}

impl VcocoGroundTruth {
    pub fn load(
        vcoco_json: &Path,
        instances_json: &Path,
        ids_file: &Path,
    ) -> Result<Self, EvalError> {
        let read = |path: &Path| {
            let path_name = path.display().to_string();
            std::fs::read_to_string(path).map_err(|source| EvalError::Io {
                path: path_name,
                source,
            })
        };
        let (vcoco, instances, ids) = (read(vcoco_json)?, read(instances_json)?, read(ids_file)?);
        let names = [vcoco_json, instances_json, ids_file].map(|p| p.display().to_string());
        Self::from_parts(&vcoco, &instances, &ids, [&names[0], &names[1], &names[2]])
    }

    /// `names`: the file names of the V-COCO json, the COCO instances json and the ids file, for errors.
    pub fn from_parts(
        vcoco: &str,
        instances: &str,
        ids: &str,
        names: [&str; 3],
    ) -> Result<Self, EvalError> {
        let labels = parse_vcoco(vcoco, names[0])?;
        let split = parse_ids(ids, names[2])?;
        let ids_error =
            |message: String| Node::new(names[2], "image ids".into(), None).invalid(message);
        // The reference asserts this: a mismatch means the files come from different splits.
        let in_split: HashSet<u64> = split.iter().copied().collect();
        if let Some(id) = split.iter().find(|id| !labels.image_ids.contains(id)) {
            return Err(ids_error(format!(
                "image {id} has no person in {}",
                names[0]
            )));
        }
        if let Some(id) = labels.image_ids.iter().find(|id| !in_split.contains(id)) {
            return Err(ids_error(format!("image {id} of {} is missing", names[0])));
        }
        let coco = parse_instances(instances, names[1])?;
        let mut images = Vec::with_capacity(split.len());
        for id in split {
            let Some(&size) = coco.sizes.get(&id) else {
                return Err(ids_error(format!("image {id} is not in {}", names[1])));
            };
            let anns = coco.annotations.get(&id).map_or(&[][..], Vec::as_slice);
            images.push(build_image(
                id,
                size,
                anns,
                coco.person_category,
                &labels,
                names[0],
            )?);
        }
        let actions = labels.actions;
        Ok(Self {
            actions,
            images,
            file_ids: coco.file_ids,
        })
    }

    /// COCO `file_name` -> image id, over every image of the instances file.
    pub fn image_id(&self, file_name: &str) -> Option<u64> {
        self.file_ids.get(file_name).copied()
    }

    /// Keeps the first `n` test images (a partial run is scored on what it ran).
    pub fn truncate(&mut self, n: usize) {
        self.images.truncate(n);
    }

    /// File names of the test images, in split-file order.
    pub fn test_images(&self) -> Vec<String> {
        let names: HashMap<u64, &String> = self.file_ids.iter().map(|(n, id)| (*id, n)).collect();
        self.images
            .iter()
            .filter_map(|image| names.get(&image.id).map(|n| n.to_string()))
            .collect()
    }

    /// Action names with their role names (`"agent"` first), in file order.
    pub fn actions(&self) -> Vec<(String, Vec<String>)> {
        self.actions
            .iter()
            .map(|a| (a.name.clone(), a.roles.clone()))
            .collect()
    }

    /// GT persons labelled with the action; shared by every role of that action.
    fn npos(&self, action: usize) -> usize {
        let persons = self.images.iter().flat_map(|i| &i.persons);
        persons.filter(|p| p.labels[action].is_some()).count()
    }
}

mod evaluate;
mod parse;
#[cfg(test)]
mod tests;

pub use evaluate::evaluate;
// Helpers the parts share (each `pub(super)` in its own file).
#[allow(unused_imports)]
use {evaluate::*, parse::*};

impl std::fmt::Display for VcocoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |v: f64| {
            if v.is_nan() {
                format!("{:>8}", "-")
            } else {
                format!("{:>8.2}", v * 100.0)
            }
        };
        writeln!(f, "V-COCO role AP (%), vsrl_eval protocol (all-point AP)")?;
        writeln!(f, "{:<28}{:>8}{:>8}", "action / role", "S1", "S2")?;
        for (s1, s2) in self.scenario_1.iter().zip(&self.scenario_2) {
            let name = format!("{} / {}", s1.action, s1.role);
            writeln!(f, "{name:<28}{}{}", pct(s1.ap), pct(s2.ap))?;
        }
        writeln!(
            f,
            "{:<28}{}{}",
            "role mAP, all entries",
            pct(self.role_map_s1),
            pct(self.role_map_s2)
        )?;
        writeln!(
            f,
            "{:<28}{}{}",
            "role mAP, without point",
            pct(self.role_map_s1_no_point),
            pct(self.role_map_s2_no_point)
        )?;
        writeln!(f, "{:<28}{}", "agent mAP", pct(self.mean_agent_ap))
    }
}
