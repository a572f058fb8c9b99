//! The demo model (seeded random weights, labelled as such) and classifiers made from
//! text for models without trained rows.

use super::*;

impl HoiclipConfig {
    /// The demo model: the full architecture at a small size (fast on a CPU), HICO-DET's
    /// 600 classes, random weights with a fixed seed. Its detections mean nothing.
    pub fn demo() -> Self {
        let clip = ClipConfig {
            embed_dim: 64,
            image_resolution: 64,
            vision_patch_size: 16,
            vision_width: 64,
            vision_layers: 2,
            vision_heads: 2,
            context_length: 77,
            vocab_size: 49408,
            text_width: 64,
            text_layers: 2,
            text_heads: 2,
        };
        HoiclipConfig::new(clip)
            .with_backbone_layers([1, 1, 1, 1])
            .with_backbone_base_width(16)
            .with_hidden_dim(64)
            .with_nheads(4)
            .with_enc_layers(1)
            .with_dec_layers(2)
            .with_inter_dec_layers(1)
            .with_dim_feedforward(128)
            .with_num_queries(16)
    }
}

/// Seed of the demo model's weights.
pub const DEMO_SEED: u64 = 20_261_127;

/// Re-draws every randomly initialised float parameter from a private seeded generator,
/// with a scale fixed by the parameter's shape (constants such as norm weights stay).
/// Burn's own RNG is global (shared with anything else initialising at the same time), so
/// it cannot make the demo model reproducible; this can.
pub(super) struct SeededReinit {
    rng: rand::rngs::StdRng,
    in_embedding: usize,
}

impl SeededReinit {
    pub(super) fn new(seed: u64) -> Self {
        use rand::SeedableRng;
        Self {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            in_embedding: 0,
        }
    }
}

impl<B: ModelBackend> burn::module::ModuleMapper<B> for SeededReinit {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        if container_type == "Struct:Embedding" {
            self.in_embedding += 1;
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if container_type == "Struct:Embedding" {
            self.in_embedding -= 1;
        }
    }

    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<B, D>>,
    ) -> burn::module::Param<Tensor<B, D>> {
        use rand::Rng;
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        let device = tensor.device();
        let values: Vec<f32> = tensor
            .clone()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        let constant = values.windows(2).all(|w| w[0] == w[1]);
        if constant {
            return burn::module::Param::from_mapped_value(id, tensor, mapper);
        }
        let bound = match D {
            1 => 0.05,
            2 if self.in_embedding > 0 => 1.0,
            2 => 1.0 / (dims[0] as f32).sqrt(),
            _ => 1.0 / (dims[1..].iter().product::<usize>() as f32).sqrt(),
        };
        let fresh: Vec<f32> = values
            .iter()
            .map(|_| bound * self.rng.random_range(-1.0f32..=1.0))
            .collect();
        let tensor = Tensor::from_data(TensorData::new(fresh, dims), &device);
        burn::module::Param::from_mapped_value(id, tensor, mapper)
    }
}

/// A classifier made from text only: normalised prompt embeddings (bias 0) for the HOI
/// and object rows, the model's verb rows and the pack's verb -> HOI map.
pub fn text_classifier<B: ModelBackend>(
    model: &Hoiclip<B>,
    pack: &Pack,
    tokenizer: &ClipTokenizer,
    device: &B::Device,
) -> Result<ClassifierWeights<B>, DetectorError> {
    let embed = |prompts: Vec<String>| -> Result<Tensor<B, 2>, DetectorError> {
        let rows = crate::classifier::embed_prompts(
            &model.clip_model,
            tokenizer,
            &prompts,
            crate::classifier::TEXT_BATCH,
        )?;
        let (n, dim) = (rows.len(), rows.first().map_or(0, Vec::len));
        Ok(Tensor::from_data(
            TensorData::new(rows.concat(), [n, dim]),
            device,
        ))
    };
    let hoi = embed(pack.interactions.iter().map(|i| i.prompt.clone()).collect())?;
    let obj = embed(pack.object_prompts.clone())?;
    let (c, k) = (hoi.dims()[0], obj.dims()[0]);
    let v = pack.verbs.len();
    Ok(ClassifierWeights {
        hoi_weight: hoi.transpose(),
        hoi_bias: Tensor::zeros([c], device),
        verb_weight: model.verb_projection.weight.val(),
        verb2hoi: Tensor::from_data(TensorData::new(pack.verb_to_hoi(), [v, c]), device),
        obj_weight: obj.transpose(),
        obj_bias: Tensor::zeros([k], device),
    })
}
