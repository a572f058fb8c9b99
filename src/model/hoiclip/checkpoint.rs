//! HOICLIP checkpoints: which keys map where (and which the model never reads), the
//! model's sizes read from a checkpoint's shapes, strict loading with a report, the native
//! format (Burn layout plus the sizes), inspection and conversion.

use super::*;

/// State-dict keys the official model stores but inference never reads.
pub const KNOWN_UNUSED: &[&str] = &[
    r"^transformer\.interaction_decoder\.",
    r"^transformer\.inter_guided_embedd\.",
    r"^hoi_class_fc\.",
    r"\.norm4\.",
    r"^clip_model\.(.*\.)?attn_mask$",
];

/// Stored by every official checkpoint; read only by the zero-shot layout.
const EVAL_MAP_KEY: &str = r"^verb2hoi_proj_eval$";

/// How an official checkpoint maps onto [`Hoiclip`] of `config`'s layout (a zero-shot
/// model reads `verb2hoi_proj_eval`, which the default one leaves unused).
pub fn load_plan(config: &HoiclipConfig) -> LoadPlan {
    let eval_map_unused = config.seen_hoi_classes.is_none().then_some(EVAL_MAP_KEY);
    LoadPlan {
        prefix: String::new(),
        known_unused: KNOWN_UNUSED
            .iter()
            .copied()
            .chain(eval_map_unused)
            .map(str::to_string)
            .collect(),
        remap: vec![
            (r"^backbone\.0\.body\.".into(), "backbone.".into()),
            (r"\.downsample\.0\.".into(), ".downsample.conv.".into()),
            (r"\.downsample\.1\.".into(), ".downsample.bn.".into()),
            (r"^obj_class_fc\.0\.".into(), "obj_class_fc.linear.".into()),
            (r"^obj_class_fc\.1\.".into(), "obj_class_fc.norm.".into()),
        ],
        native: false,
    }
}

/// Metadata keys of a native (`hoiclip convert`) file.
pub const NATIVE_FORMAT_KEY: &str = "format";
pub const NATIVE_FORMAT: &str = "hoiclip-native-1";
pub const NATIVE_CONFIG_KEY: &str = "hoiclip_config";

/// Reads the sizes of an official-layout checkpoint from its tensor shapes (layer counts
/// from key indices). Attention head counts are not visible in shapes: the official
/// values are used (8 for the DETR parts, width/64 for CLIP's towers).
///
/// The file is untrusted: every shape read is checked (rank, no empty dimension, agreement
/// between keys, widths divisible by their head counts, contiguous layer numbers) and the
/// resulting model is checked against the file's size, all before any module is built. A
/// bad file is an error naming the key and its shape as stored, never a panic.
pub fn infer_config(ckpt: &Checkpoint) -> Result<HoiclipConfig, WeightsError> {
    let path = ckpt.path().to_path_buf();
    let missing = |key: &str| WeightsError::NoMatchingKeys {
        path: path.clone(),
        prefix: String::new(),
        found: ckpt.keys().count(),
        examples: format!(
            "{}; a HOICLIP checkpoint has `{key}`",
            ckpt.keys().take(3).collect::<Vec<_>>().join(", ")
        ),
    };
    let bad = |key: &str, shape: &[usize], problem: String| WeightsError::BadShape {
        path: path.clone(),
        key: key.to_string(),
        shape: shape.to_vec(),
        problem,
    };
    // The shape of `key`, which must have `rank` dimensions, none of them empty.
    let dims = |key: &str, rank: usize| -> Result<Vec<usize>, WeightsError> {
        let shape = ckpt.shape(key).ok_or_else(|| missing(key))?;
        if shape.len() != rank {
            return Err(bad(key, &shape, format!("expected {rank} dimensions")));
        }
        if shape.contains(&0) {
            return Err(bad(
                key,
                &shape,
                "a HOICLIP tensor has no empty dimension".into(),
            ));
        }
        Ok(shape)
    };
    // `shape[axis]` of `key` must be the `what` that `source` (of `source_shape`) gives.
    let agree = |key: &str,
                 shape: &[usize],
                 axis: usize,
                 what: &str,
                 source: &str,
                 source_shape: &[usize],
                 size: usize| {
        if shape.get(axis) == Some(&size) {
            Ok(())
        } else {
            Err(bad(
                key,
                shape,
                format!(
                    "its dimension {axis} should be the {what} {size} that `{source}` \
                     {source_shape:?} gives"
                ),
            ))
        }
    };
    // Number of layers under `prefix` (`prefix{i}.*`): numbered 0..n without gaps, so a
    // key index cannot make the model arbitrarily deep.
    let layers = |prefix: &str| -> Result<usize, WeightsError> {
        let mut seen = std::collections::BTreeSet::new();
        for key in ckpt.keys() {
            if let Some(rest) = key.strip_prefix(prefix)
                && let Some(i) = rest.split('.').next().and_then(|i| i.parse::<usize>().ok())
            {
                seen.insert(i);
            }
        }
        match seen.last() {
            None => Err(missing(&format!("{prefix}0.*"))),
            Some(&last) if last + 1 != seen.len() => {
                let gap = (0..).find(|i| !seen.contains(i)).unwrap_or(0);
                Err(WeightsError::BadSizes {
                    path: path.clone(),
                    problem: format!(
                        "layers `{prefix}N.*` go up to N = {last} but layer {gap} is missing"
                    ),
                })
            }
            Some(_) => Ok(seen.len()),
        }
    };
    let defaults = HoiclipConfig::new(ClipConfig::vit_b_32());
    let nheads = defaults.nheads;

    let conv1_key = "clip_model.visual.conv1.weight";
    let conv1 = dims(conv1_key, 4)?;
    let (vision_width, patch) = (conv1[0], conv1[2]);
    if conv1[1] != 3 || conv1[3] != patch {
        return Err(bad(
            conv1_key,
            &conv1,
            "expected [width, 3, patch, patch] (RGB input, square patches)".into(),
        ));
    }
    let vision_heads = (vision_width / 64).max(1);
    if !vision_width.is_multiple_of(vision_heads) {
        return Err(bad(
            conv1_key,
            &conv1,
            format!(
                "the vision width {vision_width} is not divisible by its {vision_heads} \
                 attention heads (width / 64, as in CLIP)"
            ),
        ));
    }
    if !vision_width.is_multiple_of(nheads) {
        return Err(bad(
            conv1_key,
            &conv1,
            format!(
                "the vision width {vision_width} is not divisible by the {nheads} attention \
                 heads of the interaction decoder"
            ),
        ));
    }
    let vpos_key = "clip_model.visual.positional_embedding";
    let vpos = dims(vpos_key, 2)?;
    agree(
        vpos_key,
        &vpos,
        1,
        "vision width",
        conv1_key,
        &conv1,
        vision_width,
    )?;
    // CLS plus a square grid of patches.
    let grid = (vpos[0] - 1).isqrt();
    if grid == 0 || grid.checked_mul(grid).and_then(|g| g.checked_add(1)) != Some(vpos[0]) {
        return Err(bad(
            vpos_key,
            &vpos,
            "its first dimension should be 1 + a square number of patches".into(),
        ));
    }
    let image_resolution = patch.checked_mul(grid).ok_or_else(|| {
        bad(
            vpos_key,
            &vpos,
            "the image resolution it implies overflows".into(),
        )
    })?;

    let tpos_key = "clip_model.positional_embedding";
    let tpos = dims(tpos_key, 2)?;
    let (context_length, text_width) = (tpos[0], tpos[1]);
    let text_heads = (text_width / 64).max(1);
    if !text_width.is_multiple_of(text_heads) {
        return Err(bad(
            tpos_key,
            &tpos,
            format!(
                "the text width {text_width} is not divisible by its {text_heads} attention \
                 heads (width / 64, as in CLIP)"
            ),
        ));
    }
    let tproj_key = "clip_model.text_projection";
    let tproj = dims(tproj_key, 2)?;
    agree(
        tproj_key,
        &tproj,
        0,
        "text width",
        tpos_key,
        &tpos,
        text_width,
    )?;
    let embed_dim = tproj[1];
    if embed_dim < 2 {
        return Err(bad(
            tproj_key,
            &tproj,
            format!("the embedding width {embed_dim} is too small (the verb adapter halves it)"),
        ));
    }
    let tok_key = "clip_model.token_embedding.weight";
    let tok = dims(tok_key, 2)?;
    agree(tok_key, &tok, 1, "text width", tpos_key, &tpos, text_width)?;
    let clip = ClipConfig {
        embed_dim,
        image_resolution,
        vision_patch_size: patch,
        vision_width,
        vision_layers: layers("clip_model.visual.transformer.resblocks.")?,
        vision_heads,
        context_length,
        vocab_size: tok[0],
        text_width,
        text_layers: layers("clip_model.transformer.resblocks.")?,
        text_heads,
    };

    let query_key = "query_embed_h.weight";
    let query = dims(query_key, 2)?;
    let (num_queries, hidden) = (query[0], query[1]);
    if !hidden.is_multiple_of(nheads) {
        return Err(bad(
            query_key,
            &query,
            format!(
                "its width {hidden} (the model width d_model) is not divisible by the \
                 {nheads} attention heads"
            ),
        ));
    }
    let backbone_key = "backbone.0.body.conv1.weight";
    let backbone = dims(backbone_key, 4)?;
    if backbone[1..] != [3, 7, 7] {
        return Err(bad(
            backbone_key,
            &backbone,
            "expected [width, 3, 7, 7] (ResNet's stem)".into(),
        ));
    }
    let ffn_key = "transformer.encoder.layers.0.linear1.weight";
    let ffn = dims(ffn_key, 2)?;
    agree(ffn_key, &ffn, 1, "model width", query_key, &query, hidden)?;
    // The classifier heads: [classes, embed_dim].
    let head = |key: &str, min_rows: usize, what: &str| -> Result<usize, WeightsError> {
        let shape = dims(key, 2)?;
        agree(
            key,
            &shape,
            1,
            "embedding width",
            tproj_key,
            &tproj,
            embed_dim,
        )?;
        if shape[0] < min_rows {
            return Err(bad(key, &shape, format!("expected {what}")));
        }
        Ok(shape[0])
    };
    let trained_hoi = head("visual_projection.weight", 1, "a row per HOI class")?;
    // A zero-shot checkpoint (reference 1.7) also holds the evaluation classifier over
    // all classes; its seen-only `visual_projection` may not have more rows.
    let eval_key = "eval_visual_projection.weight";
    let (num_hoi, seen) = match ckpt.shape(eval_key) {
        None => (trained_hoi, None),
        Some(_) => {
            let all = head(
                eval_key,
                trained_hoi,
                "at least as many rows as `visual_projection`",
            )?;
            (all, Some(trained_hoi))
        }
    };
    let num_verbs = head("verb_projection.weight", 1, "a row per verb")?;
    let obj_rows = head(
        "obj_visual_projection.weight",
        2,
        "a row per object class plus one for \"no object\"",
    )?;
    let mut config = HoiclipConfig::new(clip)
        .with_backbone_layers([
            layers("backbone.0.body.layer1.")?,
            layers("backbone.0.body.layer2.")?,
            layers("backbone.0.body.layer3.")?,
            layers("backbone.0.body.layer4.")?,
        ])
        .with_backbone_base_width(backbone[0])
        .with_hidden_dim(hidden)
        .with_enc_layers(layers("transformer.encoder.layers.")?)
        .with_dec_layers(layers("transformer.instance_decoder.layers.")?)
        .with_inter_dec_layers(layers("transformer.clip_interaction_decoder.layers.")?)
        .with_dim_feedforward(ffn[0])
        .with_num_queries(num_queries)
        .with_num_hoi_classes(num_hoi)
        .with_num_verb_classes(num_verbs)
        .with_num_obj_classes(obj_rows - 1)
        .with_seen_hoi_classes(seen);
    // The verb weight the checkpoint was trained with (`args.verb_weight`); without
    // saved arguments, the dataset's script default (V-COCO, 263 classes: 0.1).
    match ckpt.arg("verb_weight").and_then(crate::model::Arg::as_f64) {
        Some(w) if w.is_finite() => config = config.with_verb_weight(w),
        _ if num_hoi == 263 => config = config.with_verb_weight(0.1),
        _ => {}
    }
    check_buildable(&config, ckpt)?;
    Ok(config)
}

impl HoiclipConfig {
    /// Checks that a model of these sizes can be built and run: nothing empty, every
    /// attention width divisible by its head count, the position encoding's even width.
    /// Says what is wrong, by field name.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.clip;
        let sizes = [
            ("clip.embed_dim", c.embed_dim),
            ("clip.image_resolution", c.image_resolution),
            ("clip.vision_patch_size", c.vision_patch_size),
            ("clip.vision_width", c.vision_width),
            ("clip.vision_heads", c.vision_heads),
            ("clip.context_length", c.context_length),
            ("clip.vocab_size", c.vocab_size),
            ("clip.text_width", c.text_width),
            ("clip.text_heads", c.text_heads),
            ("backbone_layers[0]", self.backbone_layers[0]),
            ("backbone_layers[1]", self.backbone_layers[1]),
            ("backbone_layers[2]", self.backbone_layers[2]),
            ("backbone_layers[3]", self.backbone_layers[3]),
            ("backbone_base_width", self.backbone_base_width),
            ("hidden_dim", self.hidden_dim),
            ("nheads", self.nheads),
            ("dim_feedforward", self.dim_feedforward),
            ("num_queries", self.num_queries),
            ("num_hoi_classes", self.num_hoi_classes),
            ("num_verb_classes", self.num_verb_classes),
            ("num_obj_classes", self.num_obj_classes),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} is 0"));
        }
        let attention = [
            ("hidden_dim", self.hidden_dim, "nheads", self.nheads),
            (
                "clip.vision_width (the interaction decoder's width)",
                c.vision_width,
                "nheads",
                self.nheads,
            ),
            (
                "clip.vision_width",
                c.vision_width,
                "clip.vision_heads",
                c.vision_heads,
            ),
            (
                "clip.text_width",
                c.text_width,
                "clip.text_heads",
                c.text_heads,
            ),
        ];
        for (name, width, heads_name, heads) in attention {
            if !width.is_multiple_of(heads) {
                return Err(format!(
                    "{name} {width} is not divisible by {heads_name} {heads}"
                ));
            }
        }
        if let Some(seen) = self.seen_hoi_classes
            && (seen == 0 || seen > self.num_hoi_classes)
        {
            return Err(format!(
                "seen_hoi_classes {seen} must be between 1 and num_hoi_classes {}",
                self.num_hoi_classes
            ));
        }
        if !self.hidden_dim.is_multiple_of(2) {
            return Err(format!(
                "hidden_dim {} is odd (the sine position encoding gives it half to y, half to x)",
                self.hidden_dim
            ));
        }
        if c.embed_dim < 2 {
            return Err(format!(
                "clip.embed_dim {} is too small (the verb adapter halves it)",
                c.embed_dim
            ));
        }
        if c.image_resolution < c.vision_patch_size {
            return Err(format!(
                "clip.image_resolution {} is smaller than one patch ({})",
                c.image_resolution, c.vision_patch_size
            ));
        }
        if self.num_params().is_none() {
            return Err("the sizes describe an impossibly large model".into());
        }
        Ok(())
    }

    /// Number of parameters of a model of these sizes, counted without building it (to
    /// check sizes from an untrusted file against the file's length before allocating
    /// anything). `None` beyond 2^53, far more than any checkpoint holds.
    pub fn num_params(&self) -> Option<u64> {
        // f64 cannot overflow, and counts below 2^53 are exact.
        let f = |v: usize| v as f64;
        let linear = |i: f64, o: f64| i * o + o;
        let norm = |w: f64| 2.0 * w;
        let attention = |d: f64| linear(d, 3.0 * d) + linear(d, d);
        let encoder =
            |d: f64, ff: f64| attention(d) + linear(d, ff) + linear(ff, d) + 2.0 * norm(d);
        let decoder =
            |d: f64, ff: f64| 2.0 * attention(d) + linear(d, ff) + linear(ff, d) + 3.0 * norm(d);
        let mlp = |i: f64, h: f64, o: f64| linear(i, h) + linear(h, h) + linear(h, o);
        let clip_block =
            |w: f64| attention(w) + 2.0 * norm(w) + linear(w, 4.0 * w) + linear(4.0 * w, w);
        let c = &self.clip;

        // ResNet: the first block of a stage may downsample; the others are identical.
        let bn = |ch: f64| 4.0 * ch;
        let block = |inplanes: f64, planes: f64, downsample: bool| {
            let out = 4.0 * planes;
            let main = inplanes * planes + planes * planes * 9.0 + planes * out;
            let ds = if downsample {
                inplanes * out + bn(out)
            } else {
                0.0
            };
            main + 2.0 * bn(planes) + bn(out) + ds
        };
        let base = f(self.backbone_base_width);
        let mut backbone = 3.0 * base * 49.0 + bn(base);
        let mut inplanes = base;
        for (stage, &blocks) in self.backbone_layers.iter().enumerate() {
            if blocks == 0 {
                continue;
            }
            let planes = base * f(1 << stage);
            let downsample = stage > 0 || inplanes != 4.0 * planes;
            backbone += block(inplanes, planes, downsample)
                + (f(blocks) - 1.0) * block(4.0 * planes, planes, false);
            inplanes = 4.0 * planes;
        }

        let (vw, tw, e) = (f(c.vision_width), f(c.text_width), f(c.embed_dim));
        let grid = f(c.image_resolution / c.vision_patch_size.max(1));
        let vision = 3.0 * f(c.vision_patch_size).powi(2) * vw
            + vw
            + (grid * grid + 1.0) * vw
            + 2.0 * norm(vw)
            + f(c.vision_layers) * clip_block(vw)
            + vw * e;
        let text = f(c.text_layers) * clip_block(tw)
            + f(c.vocab_size) * tw
            + f(c.context_length) * tw
            + norm(tw)
            + tw * e
            + 1.0;

        let (d, ff, cd) = (
            f(self.hidden_dim),
            f(self.dim_feedforward),
            f(self.clip_dim()),
        );
        let (nq, classes, verbs) = (
            f(self.num_queries),
            f(self.trained_hoi_classes()),
            f(self.num_verb_classes),
        );
        // Zero-shot layout: the evaluation classifier and map over all classes.
        let eval_head = self
            .seen_hoi_classes
            .map_or(0.0, |_| f(self.num_hoi_classes) * (e + verbs));
        let objects = f(self.num_obj_classes) + 1.0;
        let out_channels = base * 32.0;
        let total = 2.0
            + verbs * classes
            + 3.0 * nq * d
            + 2.0 * mlp(d, d, 4.0)
            + mlp(e, f(c.embed_dim / 2), e)
            + linear(out_channels, d)
            + backbone
            + f(self.enc_layers) * encoder(d, ff)
            + f(self.dec_layers) * decoder(d, ff)
            + norm(d)
            + f(self.inter_dec_layers) * decoder(cd, ff)
            + norm(cd)
            + 2.0 * (linear(d, cd) + norm(cd))
            + vision
            + text
            + e * verbs
            + linear(e, classes)
            + linear(d, e)
            + norm(e)
            + linear(e, objects)
            + eval_head;
        (total < 9_007_199_254_740_992.0).then_some(total as u64)
    }
}

/// Checks `config` before a model is built for `ckpt`: buildable sizes, and a model the
/// file could hold. Every parameter is stored in the file, in at least 2 bytes (fp16); one
/// byte per parameter leaves room for storages shared between parameters, and keeps sizes
/// from a hostile file from allocating more than a few times the file's length.
fn check_buildable(config: &HoiclipConfig, ckpt: &Checkpoint) -> Result<(), WeightsError> {
    let bad = |problem: String| WeightsError::BadSizes {
        path: ckpt.path().to_path_buf(),
        problem,
    };
    config.validate().map_err(&bad)?;
    let params = config.num_params().unwrap_or(u64::MAX);
    if params > ckpt.file_len() {
        return Err(bad(format!(
            "its tensor shapes describe a model of {params} parameters, more than a file of \
             {} bytes can hold",
            ckpt.file_len()
        )));
    }
    Ok(())
}

/// Whether `ckpt` is a native file written by `hoiclip convert`.
pub fn is_native(ckpt: &Checkpoint) -> bool {
    ckpt.metadata(NATIVE_FORMAT_KEY) == Some(NATIVE_FORMAT)
}

/// Loads a model from an official HOICLIP checkpoint (sizes read from its shapes) or from a
/// native file written by `hoiclip convert` (sizes stored in it).
pub fn load_file<B: ModelBackend>(
    path: &std::path::Path,
    device: &B::Device,
) -> Result<(Hoiclip<B>, HoiclipConfig, LoadReport), WeightsError> {
    load_checkpoint(&Checkpoint::open(path)?, device)
}

/// [`load_file`] on an opened file.
pub fn load_checkpoint<B: ModelBackend>(
    ckpt: &Checkpoint,
    device: &B::Device,
) -> Result<(Hoiclip<B>, HoiclipConfig, LoadReport), WeightsError> {
    if is_native(ckpt) {
        let text = ckpt.metadata(NATIVE_CONFIG_KEY).unwrap_or_default();
        let config: HoiclipConfig =
            serde_json::from_str(text).map_err(|e| WeightsError::Format {
                path: ckpt.path().to_path_buf(),
                message: format!("bad {NATIVE_CONFIG_KEY} metadata: {e}"),
            })?;
        check_buildable(&config, ckpt)?;
        let mut model = config.init::<B>(device);
        let plan = LoadPlan {
            native: true,
            ..LoadPlan::default()
        };
        let report = ckpt.load_into(&mut model, &plan)?;
        return Ok((model, config, report));
    }
    let config = infer_config(ckpt)?;
    let (model, report) = load(&config, ckpt, device)?;
    Ok((model, config, report))
}

/// What `hoiclip inspect-weights` found in a weights file that loads cleanly.
#[derive(Debug)]
pub enum Inspection {
    /// A whole HOICLIP model: an official checkpoint, or a native file from `hoiclip convert`.
    Hoiclip {
        config: Box<HoiclipConfig>,
        report: LoadReport,
        native: bool,
        /// The saved `args.zero_shot_type`, if any.
        zero_shot_type: Option<String>,
    },
    /// A CLIP ViT-B/32 state dict.
    Clip { report: LoadReport },
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inspection::Hoiclip {
                config,
                report,
                native,
                zero_shot_type,
            } => {
                write!(
                    f,
                    "HOICLIP{} ({} HOI classes, {} verbs, {} queries, CLIP width {}) loads \
                     cleanly: {report}; {} stored tensors unused by inference",
                    if *native { " (native file)" } else { "" },
                    config.num_hoi_classes,
                    config.num_verb_classes,
                    config.num_queries,
                    config.clip.vision_width,
                    report.ignored.len()
                )?;
                let split = zero_shot_type.as_deref().filter(|t| *t != "default");
                match (config.seen_hoi_classes, split) {
                    (Some(seen), split) => write!(
                        f,
                        "\nzero-shot checkpoint (split {}): trained on {seen} seen classes, \
                         {} unseen; scores all {} with eval_visual_projection and \
                         verb2hoi_proj_eval, as the official evaluation",
                        split.unwrap_or("not saved"),
                        config.num_hoi_classes - seen,
                        config.num_hoi_classes
                    ),
                    (None, Some(split)) => write!(
                        f,
                        "\nsaved zero_shot_type {split}, but no eval_visual_projection: \
                         scored with its trained classifier"
                    ),
                    (None, None) => Ok(()),
                }
            }
            Inspection::Clip { report } => write!(f, "CLIP ViT-B/32 loads cleanly: {report}"),
        }
    }
}

/// Checks that a weights file loads, for `hoiclip inspect-weights`: a native file or an
/// official HOICLIP checkpoint loads whole, strictly (sizes from the file); anything else
/// as a CLIP ViT-B/32 state dict. Errors list every missing, unused and mis-shaped key.
pub fn inspect<B: ModelBackend>(
    path: &std::path::Path,
    device: &B::Device,
) -> Result<Inspection, WeightsError> {
    let ckpt = Checkpoint::open(path)?;
    if is_native(&ckpt) || ckpt.keys().any(|k| k == "query_embed_h.weight") {
        let (_, config, report) = load_checkpoint::<B>(&ckpt, device)?;
        return Ok(Inspection::Hoiclip {
            config: Box::new(config),
            report,
            native: is_native(&ckpt),
            zero_shot_type: ckpt
                .arg("zero_shot_type")
                .and_then(crate::model::Arg::as_str)
                .map(str::to_string),
        });
    }
    let plan = crate::model::clip::load_plan(&ckpt);
    // Building ViT-B/32 costs 600 MB: first make sure the file holds CLIP at all.
    let probe = format!("{}visual.conv1.weight", plan.prefix);
    if ckpt.shape(&probe).is_none() {
        let examples: Vec<&str> = ckpt.keys().take(3).collect();
        return Err(WeightsError::NoMatchingKeys {
            path: path.to_path_buf(),
            prefix: plan.prefix.clone(),
            found: ckpt.keys().count(),
            examples: if examples.is_empty() {
                "none".into()
            } else {
                examples.join(", ")
            },
        });
    }
    let mut clip = ClipConfig::vit_b_32().init::<B>(device);
    let report = ckpt.load_into(&mut clip, &plan)?;
    Ok(Inspection::Clip { report })
}

/// Writes `model` as a native file (Burn layout + its config).
/// The official checkpoint's training arguments (`args`) go along, so scoring settings
/// read from them survive the conversion.
pub fn save_native<B: ModelBackend>(
    model: &Hoiclip<B>,
    config: &HoiclipConfig,
    args: &std::collections::BTreeMap<String, crate::model::Arg>,
    path: &std::path::Path,
) -> Result<(), WeightsError> {
    let format_err = |e: serde_json::Error| WeightsError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if model.backbone.is_folded() {
        // Folded weights are not the checkpoint's: saved, they would load as other weights.
        return Err(WeightsError::BadSizes {
            path: path.to_path_buf(),
            problem: "the model's batch norms are folded for running; save the loaded model".into(),
        });
    }
    let json = serde_json::to_string(config).map_err(format_err)?;
    let args = serde_json::to_string(args).map_err(format_err)?;
    crate::model::weights::save_native(
        model,
        path,
        &[
            (NATIVE_FORMAT_KEY, NATIVE_FORMAT),
            (NATIVE_CONFIG_KEY, &json),
            (crate::model::weights::ARGS_METADATA_KEY, &args),
        ],
    )
}

/// Converts the checkpoint at `weights` (official or native) into a native file at `out`
/// (`hoiclip convert`): what a later load reads without pickle parsing, fp16 widening or
/// layout conversion. Returns what the load used and left out.
pub fn convert<B: ModelBackend>(
    weights: &std::path::Path,
    out: &std::path::Path,
) -> Result<LoadReport, WeightsError> {
    let checkpoint = Checkpoint::open(weights)?;
    let (model, config, report) = load_checkpoint::<B>(&checkpoint, &Default::default())?;
    save_native(&model, &config, checkpoint.args(), out)?;
    Ok(report)
}

/// Loads an official-layout checkpoint strictly: every tensor used or known to be unused.
/// `config` is checked first (see [`HoiclipConfig::validate`]): a bad one is an error.
pub fn load<B: ModelBackend>(
    config: &HoiclipConfig,
    checkpoint: &Checkpoint,
    device: &B::Device,
) -> Result<(Hoiclip<B>, LoadReport), WeightsError> {
    check_buildable(config, checkpoint)?;
    let mut model = config.init::<B>(device);
    let report = checkpoint.load_into(&mut model, &load_plan(config))?;
    Ok((model, report))
}
