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
use super::ap::{ApMethod, Overlap, Thresholds};
use super::json::{Node, Parsed, parse_as};

/// Both the person and the role box must reach this IoU (`>=`).
const IOU_THRESHOLD: f64 = 0.5;

#[derive(Debug, Clone)]
struct Action {
    name: String,
    /// Role names, `"agent"` first.
    roles: Vec<String>,
}

#[derive(Debug, Clone)]
struct GtPerson {
    bbox: [f64; 4],
    /// Not in V-COCO's ann_id list: detections matched to this person are skipped.
    ignored: bool,
    /// Per action: `None` unless labelled 1, else the GT box of each non-agent role (`None` = no role object).
    labels: Vec<Option<Vec<Option<[f64; 4]>>>>,
}

#[derive(Debug, Clone)]
struct GtImage {
    id: u64,
    persons: Vec<GtPerson>,
}

/// Ground truth of the V-COCO test split, from the three official files.
#[derive(Debug, Clone)]
pub struct VcocoGroundTruth {
    actions: Vec<Action>,
    /// In split-file order.
    images: Vec<GtImage>,
    file_ids: HashMap<String, u64>,
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

// ---------------------------------------------------------------------------------------------
// Parsing

/// The V-COCO labels, indexed by COCO annotation id.
#[derive(Default)]
struct VcocoLabels {
    actions: Vec<Action>,
    /// Union of every action's ann_id list; a person outside it is ignored.
    annotated: HashSet<u64>,
    /// Per action: person ann id -> role object ann ids of roles 1.. (0 = none), for label-1 entries.
    positives: Vec<HashMap<u64, Vec<u64>>>,
    image_ids: HashSet<u64>,
}

fn parse_vcoco(text: &str, file: &str) -> Parsed<VcocoLabels> {
    let root: Value = parse_as(file, text)?;
    let mut labels = VcocoLabels::default();
    for entry in Node::new(file, String::new(), Some(&root)).items()? {
        parse_action(&entry, &mut labels)?;
    }
    Ok(labels)
}

fn parse_action(entry: &Node, out: &mut VcocoLabels) -> Parsed<()> {
    let name = entry.get("action_name").string()?;
    let roles = entry
        .get("role_name")
        .items()?
        .iter()
        .map(Node::string)
        .collect::<Parsed<Vec<_>>>()?;
    if roles.first().map(String::as_str) != Some("agent") {
        return Err(entry
            .get("role_name")
            .invalid("the first role must be \"agent\""));
    }
    if out.actions.iter().any(|a| a.name == name) {
        return Err(entry
            .get("action_name")
            .invalid(format!("duplicate action {name:?}")));
    }
    let image_ids = entry.get("image_id").uints()?;
    let ann_ids = entry.get("ann_id").uints()?;
    let label_nodes = entry.get("label").items()?;
    let role_ids = entry.get("role_object_id").uints()?;
    let (n, r) = (ann_ids.len(), roles.len());
    for (field, len) in [("image_id", image_ids.len()), ("label", label_nodes.len())] {
        if len != n {
            let message = format!("expected N = {n} entries (as ann_id), found {len}");
            return Err(entry.get(field).invalid(message));
        }
    }
    if role_ids.len() != r * n {
        let message = format!(
            "expected {r}*N = {} entries (N = {n}), found {}",
            r * n,
            role_ids.len()
        );
        return Err(entry.get("role_object_id").invalid(message));
    }
    let mut positives = HashMap::new();
    for (person, (&ann, label)) in ann_ids.iter().zip(&label_nodes).enumerate() {
        match label.uint()? {
            0 => continue,
            1 => {}
            other => return Err(label.invalid(format!("expected 0 or 1, found {other}"))),
        }
        // Role-major layout: role r of person n is at r*N + n, and role 0 is the person itself.
        if role_ids[person] != ann {
            let message = format!(
                "agent entry {person} must equal ann_id {ann}, found {}",
                role_ids[person]
            );
            return Err(entry.get("role_object_id").invalid(message));
        }
        let objects = (1..r).map(|role| role_ids[role * n + person]).collect();
        if positives.insert(ann, objects).is_some() {
            return Err(entry
                .get("ann_id")
                .invalid(format!("annotation {ann} is labelled 1 twice")));
        }
    }
    out.annotated.extend(ann_ids);
    out.image_ids.extend(image_ids);
    out.positives.push(positives);
    out.actions.push(Action { name, roles });
    Ok(())
}

fn parse_ids(text: &str, file: &str) -> Parsed<Vec<u64>> {
    let (mut ids, mut seen) = (Vec::new(), HashSet::new());
    for (k, line) in text.lines().enumerate() {
        let (line, at) = (
            line.trim(),
            Node::new(file, format!("line {}", k + 1), None),
        );
        if line.is_empty() {
            continue; // np.loadtxt skips blank lines too
        }
        let id = line
            .parse()
            .map_err(|_| at.invalid(format!("expected an image id, found {line:?}")))?;
        if !seen.insert(id) {
            return Err(at.invalid(format!("duplicate image id {id}")));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Annotations keep only the fields used, as `Value`s so type errors get a field path from us; skipping
/// the rest (segmentations) keeps memory low on the full instances file.
#[derive(Deserialize)]
struct RawInstances {
    images: Option<Value>,
    annotations: Option<Vec<RawAnnotation>>,
    categories: Option<Value>,
}

#[derive(Deserialize)]
struct RawAnnotation {
    id: Option<Value>,
    image_id: Option<Value>,
    category_id: Option<Value>,
    bbox: Option<Value>,
    area: Option<Value>,
    ignore: Option<Value>,
}

struct Annotation {
    id: u64,
    category: u64,
    /// COCO x, y, w, h.
    bbox: [f64; 4],
    area: f64,
    ignore: bool,
}

#[derive(Default)]
struct Instances {
    /// image id -> (width, height)
    sizes: HashMap<u64, (f64, f64)>,
    file_ids: HashMap<String, u64>,
    /// Per image, in file order (the order of COCO's `getAnnIds`).
    annotations: HashMap<u64, Vec<Annotation>>,
    person_category: u64,
}

fn parse_instances(text: &str, file: &str) -> Parsed<Instances> {
    let raw: RawInstances = parse_as(file, text)?;
    let root = |key: &str, value| Node::new(file, key.into(), value);
    let categories = root("categories", raw.categories.as_ref()).items()?;
    let category_ids: HashSet<u64> = categories
        .iter()
        .map(|c| c.get("id").uint())
        .collect::<Parsed<_>>()?;
    // gt_classes is the 1-based index of the sorted category ids, and class 1 is person.
    let Some(&person_category) = category_ids.iter().min() else {
        return Err(root("categories", None).invalid("empty"));
    };
    let mut out = Instances {
        person_category,
        ..Instances::default()
    };
    for image in root("images", raw.images.as_ref()).items()? {
        let (id, width, height) = (
            image.get("id").uint()?,
            image.get("width"),
            image.get("height"),
        );
        out.sizes.insert(id, (width.number()?, height.number()?));
        out.file_ids.insert(image.get("file_name").string()?, id);
    }
    let Some(annotations) = raw.annotations else {
        return Err(root("annotations", None).invalid("missing"));
    };
    for (k, raw) in annotations.iter().enumerate() {
        let (image_id, ann) = parse_annotation(raw, k, file, &category_ids)?;
        out.annotations.entry(image_id).or_default().push(ann);
    }
    Ok(out)
}

/// `(image id, annotation)` of `annotations[k]`.
fn parse_annotation<'a>(
    raw: &'a RawAnnotation,
    k: usize,
    file: &'a str,
    category_ids: &HashSet<u64>,
) -> Parsed<(u64, Annotation)> {
    let at = |name: &str, value: &'a Option<Value>| {
        Node::new(file, format!("annotations[{k}].{name}"), value.as_ref())
    };
    let category_node = at("category_id", &raw.category_id);
    let category = category_node.uint()?;
    if !category_ids.contains(&category) {
        return Err(category_node.invalid(format!("{category} is not in categories")));
    }
    let bbox_node = at("bbox", &raw.bbox);
    let corners: Vec<f64> = bbox_node
        .items()?
        .iter()
        .map(Node::number)
        .collect::<Parsed<_>>()?;
    let found = corners.len();
    let bbox = corners
        .try_into()
        .map_err(|_| bbox_node.invalid(format!("expected 4 numbers, found {found}")))?;
    // The reference drops an annotation when `ignore == 1` (Python's True == 1 too).
    let ignore = raw
        .ignore
        .as_ref()
        .is_some_and(|v| v.as_f64() == Some(1.0) || v.as_bool() == Some(true));
    let (id, area) = (at("id", &raw.id).uint()?, at("area", &raw.area).number()?);
    let image_id = at("image_id", &raw.image_id).uint()?;
    Ok((
        image_id,
        Annotation {
            id,
            category,
            bbox,
            area,
            ignore,
        },
    ))
}

/// COCO [x, y, w, h] to inclusive corners clipped to the image, or `None` for a box the reference drops.
fn clean_box(ann: &Annotation, (width, height): (f64, f64)) -> Option<[f64; 4]> {
    let [x, y, w, h] = ann.bbox;
    let (x2, y2) = (x + (w - 1.0).max(0.0), y + (h - 1.0).max(0.0));
    let clip = |v: f64, size: f64| v.max(0.0).min(size - 1.0);
    let b = [
        clip(x, width),
        clip(y, height),
        clip(x2, width),
        clip(y2, height),
    ];
    (ann.area > 0.0 && b[2] > b[0] && b[3] > b[1]).then_some(b)
}

fn build_image(
    id: u64,
    size: (f64, f64),
    anns: &[Annotation],
    person_category: u64,
    labels: &VcocoLabels,
    vcoco_file: &str,
) -> Parsed<GtImage> {
    // The reference's "valid objects", in annotation order; role objects are looked up among them.
    let valid = anns.iter().filter(|a| !a.ignore);
    let objects: Vec<_> = valid
        .filter_map(|a| clean_box(a, size).map(|b| (a, b)))
        .collect();
    let persons = objects
        .iter()
        .filter(|(ann, _)| ann.category == person_category);
    let persons =
        persons.map(|&(ann, bbox)| gt_person(ann, bbox, &objects, labels, id, vcoco_file));
    Ok(GtImage {
        id,
        persons: persons.collect::<Parsed<_>>()?,
    })
}

fn gt_person(
    ann: &Annotation,
    bbox: [f64; 4],
    objects: &[(&Annotation, [f64; 4])],
    labels: &VcocoLabels,
    image_id: u64,
    vcoco_file: &str,
) -> Parsed<GtPerson> {
    let role_box = |action: usize, obj: u64| {
        if obj == 0 {
            return Ok(None); // no annotated role object
        }
        let found = objects
            .iter()
            .find(|(o, _)| o.id == obj)
            .map(|&(_, b)| Some(b));
        let message = || {
            format!(
                "role object {obj} of person {} is not a valid object of image {image_id}",
                ann.id
            )
        };
        found.ok_or_else(|| {
            Node::new(vcoco_file, format!("[{action}].role_object_id"), None).invalid(message())
        })
    };
    let mut per_action = Vec::with_capacity(labels.positives.len());
    for (a, positives) in labels.positives.iter().enumerate() {
        let role_boxes = positives
            .get(&ann.id)
            .map(|objs| objs.iter().map(|&obj| role_box(a, obj)).collect());
        per_action.push(role_boxes.transpose()?);
    }
    Ok(GtPerson {
        bbox,
        // Unannotated people and crowd boxes are GT persons too, but detections matched to them are skipped.
        ignored: !labels.annotated.contains(&ann.id),
        labels: per_action,
    })
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// What one AP entry scores: the agent score of an action, or the role score of one of its roles.
#[derive(Clone, Copy)]
enum Entry<'k> {
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
type Boxes<'d> = (&'d [f64; 4], Option<&'d [f64; 4]>);

/// (score, true positive) of every detection that is not skipped, pooled over the test images.
fn scored_detections(
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
fn judge(
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
fn best_person(persons: &[GtPerson], person_box: &[f64; 4]) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for (j, person) in persons.iter().enumerate() {
        let overlap = iou(person_box, &person.bbox);
        if best.is_none_or(|(_, max)| overlap > max) {
            best = Some((j, overlap));
        }
    }
    best
}

fn role_matches(pred: &[f64; 4], gt: Option<[f64; 4]>, scenario: Scenario) -> bool {
    match (gt, scenario) {
        (Some(gt), _) => iou(pred, &gt) >= IOU_THRESHOLD,
        // Scenario 1: the role object is absent, so only an explicit "no object" box is right.
        (None, Scenario::One) => pred.iter().all(|&v| v == 0.0) || pred.iter().all(|v| v.is_nan()),
        (None, Scenario::Two) => true,
    }
}

/// IoU with the +1 pixel convention of `get_overlap` (boxes apart by a pixel or more do
/// not overlap, as in the HICO-DET MATLAB code). In f64, where the reference uses float32.
fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return 0.0; // numpy gives NaN, which fails `>= 0.5` just like 0
    }
    super::ap::iou(a, b, Overlap::Matlab)
}

/// Stable: equal scores keep their input order.
fn sort_descending<T>(items: &mut [T], score: impl Fn(&T) -> f64) {
    items.sort_by(|x, y| score(y).partial_cmp(&score(x)).unwrap_or(Ordering::Equal));
}

/// VOC all-point AP; NaN when `npos == 0`, 0 when there is no detection.
fn average_precision(mut scored: Vec<(f64, bool)>, npos: usize) -> f64 {
    sort_descending(&mut scored, |s| s.0);
    let hits: Vec<bool> = scored.iter().map(|s| s.1).collect();
    super::ap::average_precision(&hits, npos, ApMethod::AllPoint, Thresholds::Numpy)
        .unwrap_or(f64::NAN)
}

/// Mean of the non-NaN values; NaN when there are none.
fn nan_mean(values: impl Iterator<Item = f64>) -> f64 {
    let kept: Vec<f64> = values.filter(|v| !v.is_nan()).collect();
    if kept.is_empty() {
        f64::NAN
    } else {
        kept.iter().sum::<f64>() / kept.len() as f64
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NAMES: [&str; 3] = ["vcoco_test.json", "instances.json", "vcoco_test.ids"];
    const IDS: &str = "1\n2\n3\n";
    // GT boxes after x2 = x + w - 1, y2 = y + h - 1 (see coco()).
    const P101: [f64; 4] = [10.0, 10.0, 109.0, 209.0];
    const KNIFE: [f64; 4] = [120.0, 50.0, 139.0, 79.0];
    const CAKE: [f64; 4] = [150.0, 100.0, 209.0, 139.0];
    const P104: [f64; 4] = [300.0, 10.0, 399.0, 209.0];
    const P201: [f64; 4] = [50.0, 50.0, 149.0, 149.0];
    const CUP: [f64; 4] = [160.0, 60.0, 189.0, 89.0];
    const P203: [f64; 4] = [300.0, 50.0, 399.0, 149.0];
    const APPLE: [f64; 4] = [420.0, 60.0, 449.0, 89.0];
    const P301: [f64; 4] = [10.0, 10.0, 59.0, 59.0];
    const ZERO: [f64; 4] = [0.0; 4];

    fn ann(id: u64, image: u64, category: u64, [x, y, w, h]: [u32; 4]) -> Value {
        json!({"id": id, "image_id": image, "category_id": category, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    }

    /// Image 1: person 101 cuts cake 103 with knife 102 and points (no instr); person 104 is not in V-COCO.
    /// Image 2: person 201 stands and holds cup 202; person 203 cuts apple 204, instr missing.
    /// Image 3: its only person, 301, has `ignore: 1`, so the image has no GT person.
    fn coco() -> Value {
        let mut ignored = ann(301, 3, 1, [10, 10, 50, 50]);
        ignored["ignore"] = json!(1);
        let image = |id: u64| json!({"id": id, "width": 640, "height": 480, "file_name": format!("img{id}.jpg")});
        json!({
            "images": [image(1), image(2), image(3)],
            "annotations": [
                ann(101, 1, 1, [10, 10, 100, 200]), ann(102, 1, 49, [120, 50, 20, 30]),
                ann(103, 1, 61, [150, 100, 60, 40]), ann(104, 1, 1, [300, 10, 100, 200]),
                ann(201, 2, 1, [50, 50, 100, 100]), ann(202, 2, 47, [160, 60, 30, 30]),
                ann(203, 2, 1, [300, 50, 100, 100]), ann(204, 2, 53, [420, 60, 30, 30]),
                ignored,
            ],
            "categories": [{"id": 1, "name": "person"}, {"id": 47, "name": "cup"}, {"id": 49, "name": "knife"},
                           {"id": 53, "name": "apple"}, {"id": 61, "name": "cake"}],
        })
    }

    /// Persons (ann_id) 101, 201, 203, 301. npos: stand 2, hold 1, cut 2, point 1, kick 0.
    fn vcoco() -> Value {
        let action = |name: &str, roles: &[&str], label: [u8; 4], objects: &[[u64; 4]]| {
            let mut role_object_id = vec![101, 201, 203, 301];
            role_object_id.extend(objects.iter().flatten());
            json!({"action_name": name, "role_name": roles, "image_id": [1, 2, 2, 3], "ann_id": [101, 201, 203, 301],
                   "label": label, "role_object_id": role_object_id, "include": []})
        };
        let cut_objects = [[102, 0, 0, 0], [103, 0, 204, 0]];
        json!([
            action("stand", &["agent"], [1, 1, 0, 0], &[]),
            // 301 holds too, but `ignore: 1` drops it from the GT: hold npos stays 1.
            action("hold", &["agent", "obj"], [0, 1, 0, 1], &[[0, 202, 0, 0]]),
            action(
                "cut",
                &["agent", "instr", "obj"],
                [1, 0, 1, 0],
                &cut_objects
            ),
            action("point", &["agent", "instr"], [1, 0, 0, 0], &[[0, 0, 0, 0]]),
            action("kick", &["agent", "obj"], [0, 0, 0, 0], &[[0, 0, 0, 0]]),
        ])
    }

    fn gt() -> VcocoGroundTruth {
        let (vcoco, coco) = (vcoco().to_string(), coco().to_string());
        VcocoGroundTruth::from_parts(&vcoco, &coco, IDS, NAMES).expect("fixture parses")
    }

    /// One detection of `action`; its agent score and every listed role get `score`.
    fn det(
        image_id: u64,
        person: [f64; 4],
        action: &str,
        score: f64,
        roles: &[(&str, [f64; 4])],
    ) -> VcocoDetection {
        let agent_scores = HashMap::from([(action.to_string(), score)]);
        let role = |&(role, bbox): &(&str, [f64; 4])| ((action.into(), role.into()), (bbox, score));
        let role_boxes = roles.iter().map(role).collect();
        VcocoDetection {
            image_id,
            person_box: person,
            agent_scores,
            role_boxes,
        }
    }

    /// [agent AP, Scenario 1 AP, Scenario 2 AP] of (action, role), and the report.
    fn aps(dets: &[VcocoDetection], action: &str, role: &str) -> ([f64; 3], VcocoReport) {
        let report = evaluate(&gt(), dets);
        let agent = report
            .agent_ap
            .iter()
            .find(|(a, _)| a == action)
            .expect("action")
            .1;
        let role_ap = |entries: &[RoleAp]| {
            let entry = entries
                .iter()
                .find(|e| e.action == action && e.role == role);
            entry.expect("entry").ap
        };
        (
            [
                agent,
                role_ap(&report.scenario_1),
                role_ap(&report.scenario_2),
            ],
            report,
        )
    }

    fn assert_close<const N: usize>(actual: [f64; N], expected: [f64; N]) {
        let close = actual
            .iter()
            .zip(&expected)
            .all(|(a, e)| (a - e).abs() < 1e-12);
        assert!(close, "{actual:?} != {expected:?}");
    }

    fn perfect(point_instr: [f64; 4]) -> Vec<VcocoDetection> {
        vec![
            det(1, P101, "stand", 0.9, &[]),
            det(2, P201, "stand", 0.9, &[]),
            det(2, P201, "hold", 0.9, &[("obj", CUP)]),
            det(1, P101, "cut", 0.9, &[("instr", KNIFE), ("obj", CAKE)]),
            det(2, P203, "cut", 0.9, &[("instr", ZERO), ("obj", APPLE)]),
            det(1, P101, "point", 0.9, &[("instr", point_instr)]),
        ]
    }

    #[test]
    fn perfect_detections_score_one() {
        let dets = perfect(ZERO);
        for (action, role) in [
            ("hold", "obj"),
            ("cut", "instr"),
            ("cut", "obj"),
            ("point", "instr"),
        ] {
            assert_close(aps(&dets, action, role).0, [1.0; 3]);
        }
        let (kick, report) = aps(&dets, "kick", "obj");
        assert!(kick.iter().all(|ap| ap.is_nan()), "npos = 0 gives NaN");
        assert_eq!(report.agent_ap[0].0, "stand");
        assert_close([report.agent_ap[0].1], [1.0]);
        assert_eq!((report.scenario_1.len(), report.scenario_2.len()), (5, 5));
        // nansum / 5 actions: the NaN of kick counts as 0 there, as in vsrl_eval ...
        assert_close([report.mean_agent_ap], [4.0 / 5.0]);
        // ... while kick/obj (NaN) is left out of the role means.
        let maps = [
            report.role_map_s1,
            report.role_map_s2,
            report.role_map_s1_no_point,
            report.role_map_s2_no_point,
        ];
        assert_close(maps, [1.0; 4]);
    }

    #[test]
    fn duplicate_detection_is_a_false_positive() {
        // cut, npos 2: 0.9 TP (101), 0.8 FP (101 again), 0.7 TP (203).
        // rec = [.5, .5, 1], prec = [1, .5, 2/3]; envelope at rec .5 -> 1, at rec 1 -> 2/3.
        // AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
        let dets = [
            det(1, P101, "cut", 0.9, &[("obj", CAKE)]),
            det(1, P101, "cut", 0.8, &[("obj", CAKE)]),
            det(2, P203, "cut", 0.7, &[("obj", APPLE)]),
        ];
        let (cut, report) = aps(&dets, "cut", "obj");
        assert_close(cut, [5.0 / 6.0; 3]);
        assert_eq!(report.scenario_1[2].detections, 3);
    }

    #[test]
    fn person_iou_threshold_uses_plus_one_pixel() {
        // GT 201 = [50,50,149,149] is 100x100 = 10000 px with the +1. A box [50,50,x2,149] lies
        // inside it, so IoU = (x2 - 50 + 1) * 100 / 10000:
        //   x2 = 100 -> 5100/10000 = 0.51 (TP); x2 = 98 -> 4900/10000 = 0.49 (FP);
        //   x2 = 99 -> 5000/10000 = 0.50 exactly (TP; without the +1: 49*99/(99*99) = 0.4949, FP).
        for (x2, expected) in [(100.0, 1.0), (99.0, 1.0), (98.0, 0.0)] {
            let dets = [det(
                2,
                [50.0, 50.0, x2, 149.0],
                "hold",
                1.0,
                &[("obj", CUP)],
            )];
            assert_close(aps(&dets, "hold", "obj").0, [expected; 3]);
        }
    }

    #[test]
    fn missing_gt_role_object() {
        // point: person 101, instr role_object_id 0, npos 1. S1 wants an all-0 or all-NaN box, S2 takes any.
        for (pred, s1) in [(KNIFE, 0.0), (ZERO, 1.0), ([f64::NAN; 4], 1.0)] {
            let dets = [det(1, P101, "point", 0.9, &[("instr", pred)])];
            assert_close(aps(&dets, "point", "instr").0, [1.0, s1, 1.0]);
        }
    }

    #[test]
    fn detection_on_ignored_person_is_skipped() {
        // 104 is a GT person without V-COCO labels: the 0.95 detection is neither TP nor FP, so AP stays 1.
        let dets = [
            det(1, P104, "hold", 0.95, &[("obj", CUP)]),
            det(2, P201, "hold", 0.5, &[("obj", CUP)]),
        ];
        let (hold, report) = aps(&dets, "hold", "obj");
        assert_close(hold, [1.0; 3]);
        assert_eq!(report.scenario_1[0].detections, 1);
    }

    #[test]
    fn image_without_gt_person_gives_false_positive() {
        // Image 3 only has an `ignore: 1` person. Pooled: 0.9 FP, 0.5 TP; rec = [0, 1], prec = [0, .5].
        // Envelope 0.5 over rec 0..1 -> AP = 0.5.
        let dets = [
            det(3, P301, "hold", 0.9, &[("obj", CUP)]),
            det(2, P201, "hold", 0.5, &[("obj", CUP)]),
        ];
        assert_close(aps(&dets, "hold", "obj").0, [0.5; 3]);
    }

    #[test]
    fn wrong_role_box_leaves_person_uncovered() {
        // cut/obj, npos 2: 0.9 knife box on 101 (FP, 101 stays uncovered), 0.8 cake on 101 (TP), 0.7 apple on 203 (TP).
        // rec = [0, .5, 1], prec = [0, .5, 2/3]; envelope 2/3 everywhere -> AP = 0.5*2/3 + 0.5*2/3 = 2/3.
        // The agent AP sees TP, FP (duplicate), TP -> 5/6 as in duplicate_detection_is_a_false_positive.
        let dets = [
            det(1, P101, "cut", 0.9, &[("obj", KNIFE)]),
            det(1, P101, "cut", 0.8, &[("obj", CAKE)]),
            det(2, P203, "cut", 0.7, &[("obj", APPLE)]),
        ];
        assert_close(
            aps(&dets, "cut", "obj").0,
            [5.0 / 6.0, 2.0 / 3.0, 2.0 / 3.0],
        );
    }

    #[test]
    fn means_with_and_without_point() {
        // A knife box for point's missing instr: S1 entries hold 1, cut/instr 1, cut/obj 1, point 0, kick NaN
        // -> 3/4 with point, 3/3 without. S2 accepts the knife box: 1 and 1.
        let report = evaluate(&gt(), &perfect(KNIFE));
        let maps = [
            report.role_map_s1,
            report.role_map_s1_no_point,
            report.role_map_s2,
            report.role_map_s2_no_point,
        ];
        assert_close(maps, [0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn no_detections_give_zero_and_npos_zero_gives_nan() {
        let (hold, report) = aps(&[], "hold", "obj");
        assert_close(hold, [0.0; 3]);
        assert!(report.scenario_1[4].ap.is_nan() && report.scenario_1[4].npos == 0);
        assert_close([report.role_map_s1, report.mean_agent_ap], [0.0; 2]);
    }

    #[test]
    fn equal_scores_keep_split_order() {
        // Same score: image 2 (TP) comes before image 3 (FP) in the split, so rec = [1, 1] -> AP 1.
        let dets = [
            det(3, P301, "hold", 0.5, &[]),
            det(2, P201, "hold", 0.5, &[]),
        ];
        assert_close([aps(&dets, "hold", "obj").0[0]], [1.0]);
    }

    #[test]
    fn gt_boxes_are_inclusive_clipped_and_validated() {
        let ann = |bbox, area| Annotation {
            id: 1,
            category: 1,
            bbox,
            area,
            ignore: false,
        };
        let size = (640.0, 480.0);
        // x2 = 600 + 80 - 1 = 679, clipped to 639; y2 = 10 + 20 - 1 = 29.
        let clipped = Some([600.0, 10.0, 639.0, 29.0]);
        assert_eq!(
            clean_box(&ann([600.0, 10.0, 80.0, 20.0], 1600.0), size),
            clipped
        );
        // w = 1 gives x2 == x1, and area 0: both dropped.
        assert_eq!(clean_box(&ann([5.0, 5.0, 1.0, 20.0], 20.0), size), None);
        assert_eq!(clean_box(&ann([5.0, 5.0, 10.0, 20.0], 0.0), size), None);
    }

    #[test]
    fn load_reads_files_and_maps_names() {
        let dir = std::env::temp_dir().join(format!("vcoco-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let paths = NAMES.map(|n| dir.join(n));
        for (path, text) in paths
            .iter()
            .zip([vcoco().to_string(), coco().to_string(), IDS.into()])
        {
            std::fs::write(path, text).expect("write");
        }
        let gt = VcocoGroundTruth::load(&paths[0], &paths[1], &paths[2]).expect("load");
        assert_eq!(
            (gt.image_id("img2.jpg"), gt.image_id("nope.jpg")),
            (Some(2), None)
        );
        let roles = vec!["agent".to_string(), "instr".into(), "obj".into()];
        assert_eq!(gt.actions()[2], ("cut".to_string(), roles));
        let missing = VcocoGroundTruth::load(&dir.join("absent.json"), &paths[1], &paths[2]);
        assert!(
            matches!(missing, Err(EvalError::Io { ref path, .. }) if path.ends_with("absent.json"))
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    fn parse_error(vcoco: Value, coco: Value, ids: &str) -> String {
        match VcocoGroundTruth::from_parts(&vcoco.to_string(), &coco.to_string(), ids, NAMES) {
            Err(e @ EvalError::Invalid { .. }) => e.to_string(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn malformed_files_name_file_and_field() {
        let mut v = vcoco();
        v[1].as_object_mut().expect("object").remove("label");
        assert_eq!(
            parse_error(v, coco(), IDS),
            "vcoco_test.json: [1].label: missing"
        );

        let mut v = vcoco();
        v[2]["role_object_id"].as_array_mut().expect("list").pop();
        let expected =
            "vcoco_test.json: [2].role_object_id: expected 3*N = 12 entries (N = 4), found 11";
        assert_eq!(parse_error(v, coco(), IDS), expected);

        let mut v = vcoco();
        v[0]["label"][1] = json!(2);
        assert_eq!(
            parse_error(v, coco(), IDS),
            "vcoco_test.json: [0].label[1]: expected 0 or 1, found 2"
        );

        let err = parse_error(vcoco(), coco(), "1\nx2\n3\n");
        assert_eq!(
            err,
            "vcoco_test.ids: line 2: expected an image id, found \"x2\""
        );
        assert!(
            parse_error(vcoco(), coco(), "1\n2\n")
                .starts_with("vcoco_test.ids: image ids: image 3")
        );

        let mut c = coco();
        c["annotations"][0]
            .as_object_mut()
            .expect("object")
            .remove("bbox");
        assert_eq!(
            parse_error(vcoco(), c, IDS),
            "instances.json: annotations[0].bbox: missing"
        );

        let mut v = vcoco();
        v[1]["role_object_id"][5] = json!(999); // hold's obj of person 201
        assert!(
            parse_error(v, coco(), IDS)
                .starts_with("vcoco_test.json: [1].role_object_id: role object 999")
        );
    }
}
