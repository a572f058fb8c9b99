//! Agent and role AP as `vsrl_eval.py` computes them.

use super::*;

/// What one AP entry scores: the agent score of an action, or the role score of one of its roles.
#[derive(Clone, Copy)]
pub(super) enum Entry<'k> {
    Agent(&'k str),
    /// The (action, role) key, the role's index in `role_name` (1..; 0 is the agent), the scenario.
    Role(&'k (String, String), usize, Scenario),
}

impl Entry<'_> {
    /// Score (and predicted role box) of a detection, `None` when it has none for this entry.
    fn score(self, det: &VcocoDetection) -> Option<(f64, Option<&[f64; 4]>)> {
        let (score, role_box) = match self {
            Entry::Agent(action) => (*det.agent_scores.get(action)?, None),
            Entry::Role(key, ..) => det.role_boxes.get(key).map(|(b, s)| (*s, Some(b)))?,
        };
        (!score.is_nan()).then_some((score, role_box))
    }
}

pub fn evaluate(gt: &VcocoGroundTruth, detections: &[VcocoDetection]) -> VcocoReport {
    let mut by_image: HashMap<u64, Vec<&VcocoDetection>> = HashMap::new();
    for det in detections {
        by_image.entry(det.image_id).or_default().push(det);
    }
    let (mut agent_ap, mut scenario_1, mut scenario_2) = (Vec::new(), Vec::new(), Vec::new());
    for (a, action) in gt.actions.iter().enumerate() {
        let npos = gt.npos(a);
        let scored = scored_detections(gt, &by_image, a, Entry::Agent(&action.name));
        agent_ap.push((action.name.clone(), average_precision(scored, npos)));
        for (index, role) in action.roles.iter().enumerate().skip(1) {
            let key = (action.name.clone(), role.clone());
            for (scenario, out) in [
                (Scenario::One, &mut scenario_1),
                (Scenario::Two, &mut scenario_2),
            ] {
                let scored =
                    scored_detections(gt, &by_image, a, Entry::Role(&key, index, scenario));
                let (action, role, detections) = (key.0.clone(), key.1.clone(), scored.len());
                let ap = average_precision(scored, npos);
                out.push(RoleAp {
                    action,
                    role,
                    ap,
                    npos,
                    detections,
                });
            }
        }
    }
    // vsrl_eval divides the nansum by the number of actions, not by the non-NaN count.
    let ap_sum: f64 = agent_ap
        .iter()
        .map(|(_, ap)| *ap)
        .filter(|ap| !ap.is_nan())
        .sum();
    let role_map = |entries: &[RoleAp], with_point: bool| {
        let kept = entries.iter().filter(|e| with_point || e.action != "point");
        nan_mean(kept.map(|e| e.ap))
    };
    VcocoReport {
        mean_agent_ap: ap_sum / agent_ap.len() as f64,
        role_map_s1: role_map(&scenario_1, true),
        role_map_s2: role_map(&scenario_2, true),
        role_map_s1_no_point: role_map(&scenario_1, false),
        role_map_s2_no_point: role_map(&scenario_2, false),
        agent_ap,
        scenario_1,
        scenario_2,
    }
}

/// A predicted person box and, for a role entry, the predicted role box.
pub(super) type Boxes<'d> = (&'d [f64; 4], Option<&'d [f64; 4]>);

/// (score, true positive) of every detection that is not skipped, pooled over the test images.
pub(super) fn scored_detections(
    gt: &VcocoGroundTruth,
    by_image: &HashMap<u64, Vec<&VcocoDetection>>,
    action: usize,
    entry: Entry,
) -> Vec<(f64, bool)> {
    let mut out = Vec::new();
    for image in &gt.images {
        let Some(dets) = by_image.get(&image.id) else {
            continue;
        };
        let scored = dets
            .iter()
            .filter_map(|d| entry.score(d).map(|(s, role)| (s, (&d.person_box, role))));
        let mut candidates: Vec<(f64, Boxes)> = scored.collect();
        // Within an image the order decides which duplicate covers the GT person first.
        sort_descending(&mut candidates, |c| c.0);
        // Coverage is per (image, action, role).
        let mut covered = vec![false; image.persons.len()];
        for (score, boxes) in candidates {
            if let Some(tp) = judge(&image.persons, &mut covered, action, entry, boxes) {
                out.push((score, tp));
            }
        }
    }
    out
}

/// `Some(true)` TP, `Some(false)` FP, `None` skipped (matched to an ignored person).
pub(super) fn judge(
    persons: &[GtPerson],
    covered: &mut [bool],
    action: usize,
    entry: Entry,
    boxes: Boxes,
) -> Option<bool> {
    let (person_box, role_box) = boxes;
    // No GT person: the reference crashes (argmax of an empty array); we count a false positive.
    let Some((j, overlap)) = best_person(persons, person_box) else {
        return Some(false);
    };
    if persons[j].ignored {
        return None;
    }
    let Some(gt_roles) = &persons[j].labels[action] else {
        return Some(false);
    };
    let role_ok = match (entry, role_box) {
        (Entry::Role(_, index, scenario), Some(pred)) => {
            role_matches(pred, gt_roles[index - 1], scenario)
        }
        _ => true, // the agent entry has no role to check
    };
    // A wrong role box is an FP that leaves the person uncovered for a later, lower-scored detection.
    let tp = overlap >= IOU_THRESHOLD && role_ok && !covered[j];
    covered[j] |= tp;
    Some(tp)
}

/// Index and IoU of the GT person overlapping the person box most; the first maximum wins (numpy argmax).
pub(super) fn best_person(persons: &[GtPerson], person_box: &[f64; 4]) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for (j, person) in persons.iter().enumerate() {
        let overlap = iou(person_box, &person.bbox);
        if best.is_none_or(|(_, max)| overlap > max) {
            best = Some((j, overlap));
        }
    }
    best
}

pub(super) fn role_matches(pred: &[f64; 4], gt: Option<[f64; 4]>, scenario: Scenario) -> bool {
    match (gt, scenario) {
        (Some(gt), _) => iou(pred, &gt) >= IOU_THRESHOLD,
        // Scenario 1: the role object is absent, so only an explicit "no object" box is right.
        (None, Scenario::One) => pred.iter().all(|&v| v == 0.0) || pred.iter().all(|v| v.is_nan()),
        (None, Scenario::Two) => true,
    }
}

/// IoU with the +1 pixel convention of `get_overlap` (boxes apart by a pixel or more do
/// not overlap, as in the HICO-DET MATLAB code). In f64, where the reference uses float32.
pub(super) fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return 0.0; // numpy gives NaN, which fails `>= 0.5` just like 0
    }
    crate::eval::ap::iou(a, b, Overlap::Matlab)
}

/// Stable: equal scores keep their input order.
pub(super) fn sort_descending<T>(items: &mut [T], score: impl Fn(&T) -> f64) {
    items.sort_by(|x, y| score(y).partial_cmp(&score(x)).unwrap_or(Ordering::Equal));
}

/// VOC all-point AP; NaN when `npos == 0`, 0 when there is no detection.
pub(super) fn average_precision(mut scored: Vec<(f64, bool)>, npos: usize) -> f64 {
    sort_descending(&mut scored, |s| s.0);
    let hits: Vec<bool> = scored.iter().map(|s| s.1).collect();
    crate::eval::ap::average_precision(&hits, npos, ApMethod::AllPoint, Thresholds::Numpy)
        .unwrap_or(f64::NAN)
}

/// Mean of the non-NaN values; NaN when there are none.
pub(super) fn nan_mean(values: impl Iterator<Item = f64>) -> f64 {
    let kept: Vec<f64> = values.filter(|v| !v.is_nan()).collect();
    if kept.is_empty() {
        f64::NAN
    } else {
        kept.iter().sum::<f64>() / kept.len() as f64
    }
}
