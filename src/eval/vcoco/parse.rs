//! Reading V-COCO's files: the labels, the split ids and the COCO instances.

use super::*;

/// The V-COCO labels, indexed by COCO annotation id.
#[derive(Default)]
pub(super) struct VcocoLabels {
    pub(super) actions: Vec<Action>,
    /// Union of every action's ann_id list; a person outside it is ignored.
    pub(super) annotated: HashSet<u64>,
    /// Per action: person ann id -> role object ann ids of roles 1.. (0 = none), for label-1 entries.
    pub(super) positives: Vec<HashMap<u64, Vec<u64>>>,
    pub(super) image_ids: HashSet<u64>,
}

pub(super) fn parse_vcoco(text: &str, file: &str) -> Parsed<VcocoLabels> {
    let root: Value = parse_as(file, text)?;
    let mut labels = VcocoLabels::default();
    for entry in Node::new(file, String::new(), Some(&root)).items()? {
        parse_action(&entry, &mut labels)?;
    }
    Ok(labels)
}

pub(super) fn parse_action(entry: &Node, out: &mut VcocoLabels) -> Parsed<()> {
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

pub(super) fn parse_ids(text: &str, file: &str) -> Parsed<Vec<u64>> {
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
pub(super) struct RawInstances {
    pub(super) images: Option<Value>,
    pub(super) annotations: Option<Vec<RawAnnotation>>,
    pub(super) categories: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct RawAnnotation {
    pub(super) id: Option<Value>,
    pub(super) image_id: Option<Value>,
    pub(super) category_id: Option<Value>,
    pub(super) bbox: Option<Value>,
    pub(super) area: Option<Value>,
    pub(super) ignore: Option<Value>,
}

pub(super) struct Annotation {
    pub(super) id: u64,
    pub(super) category: u64,
    /// COCO x, y, w, h.
    pub(super) bbox: [f64; 4],
    pub(super) area: f64,
    pub(super) ignore: bool,
}

#[derive(Default)]
pub(super) struct Instances {
    /// image id -> (width, height)
    pub(super) sizes: HashMap<u64, (f64, f64)>,
    pub(super) file_ids: HashMap<String, u64>,
    /// Per image, in file order (the order of COCO's `getAnnIds`).
    pub(super) annotations: HashMap<u64, Vec<Annotation>>,
    pub(super) person_category: u64,
}

pub(super) fn parse_instances(text: &str, file: &str) -> Parsed<Instances> {
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
pub(super) fn parse_annotation<'a>(
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
pub(super) fn clean_box(ann: &Annotation, (width, height): (f64, f64)) -> Option<[f64; 4]> {
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

pub(super) fn build_image(
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

pub(super) fn gt_person(
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
