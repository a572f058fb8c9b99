//! `hoiclip vocab`: the vocabulary in the database, as the API shows it (each line one of
//! the API's wire shapes).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use super::{VocabModelArgs, defaults, runtime};
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::vision::decode;
use hoiclip::vision::decode::{exif_orientation, orient};

#[derive(clap::Args, Debug)]
pub struct VocabArgs {
    /// Vocabulary database URL: sqlite:PATH or postgres://USER@HOST/DB.
    #[arg(long, env = "HOICLIP_DATABASE_URL", default_value_t = defaults().database_url)]
    database_url: String,
    #[command(subcommand)]
    command: VocabCommand,
}

#[derive(Subcommand, Debug)]
enum VocabCommand {
    /// List verbs, objects, interactions or packs as JSON lines (the API's shapes; a row
    /// source is null unless --row-sources loads the model, as before a server's first
    /// build).
    List {
        #[arg(value_parser = ["verbs", "objects", "interactions", "packs"])]
        what: String,
        /// Only interactions of this pack.
        #[arg(long)]
        pack: Option<String>,
        /// Add each row's source in the model's classifier (`trained`, `examples` with
        /// their count, or `text`): loads the model (--weights) and builds its classifier.
        #[arg(long)]
        row_sources: bool,
        #[command(flatten)]
        model: VocabModelArgs,
    },
    /// Teach a verb from example images: each example's person, object and union crops
    /// go through the model's image tower, and the verb's row becomes their visual
    /// semantic arithmetic (as `POST /verbs/{id}/examples`). Loads the model (--weights).
    AddExamples {
        /// The verb's name.
        verb: String,
        /// One example: an image file, the person's box and the object's box as
        /// "x1,y1,x2,y2" in the image's pixels, and the object's name (repeatable).
        #[arg(long = "example", num_args = 4, required = true,
            value_names = ["IMAGE", "HUMAN_BOX", "OBJECT_BOX", "OBJECT"])]
        examples: Vec<String>,
        /// Replace the verb's earlier examples with these, in one step.
        #[arg(long)]
        replace: bool,
        /// Boxes are in the stored pixels, not in the image turned to its EXIF
        /// orientation (as the API's `auto_orient=false`).
        #[arg(long)]
        keep_orientation: bool,
        #[command(flatten)]
        model: VocabModelArgs,
    },
    /// List a verb's examples as JSON lines (`used_by_model` for the model --weights
    /// names, which is loaded to tell).
    Examples {
        verb: String,
        #[command(flatten)]
        model: VocabModelArgs,
    },
    /// Remove one example of a verb.
    RemoveExample { verb: String, id: i64 },
    /// Add a verb and its interactions ("a photo of a person {ing} {a/an} {object}").
    AddVerb {
        name: String,
        /// The -ing phrase used in prompts ("juggling", "sitting on").
        #[arg(long)]
        ing: String,
        /// Objects it applies to (repeatable).
        #[arg(long = "object")]
        objects: Vec<String>,
        /// An explicit prompt for an object: OBJECT=PROMPT (repeatable).
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        #[arg(long)]
        pack: Option<String>,
    },
    /// Add an object ("a photo of {a/an} {object}" unless --prompt).
    AddObject {
        name: String,
        #[arg(long)]
        prompt: Option<String>,
    },
    /// Add an interaction for an existing verb and object.
    AddInteraction {
        verb: String,
        object: String,
        #[arg(long)]
        prompt: Option<String>,
        #[arg(long)]
        pack: Option<String>,
    },
    /// Remove a user verb, object or interaction (seed entries stay).
    Remove {
        #[arg(value_parser = ["verb", "object", "interaction"])]
        what: String,
        id: i64,
    },
    /// Write a pack as JSON (to stdout, or --out).
    Export {
        pack: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Import a pack written by `export`.
    Import { file: PathBuf },
}

/// Runs a vocabulary command on the database and prints what the API answers for the
/// same change or listing.
pub fn run(args: VocabArgs) -> anyhow::Result<()> {
    use hoiclip::api::dto::{
        CreatedExamples, CreatedInteraction, CreatedObject, CreatedVerb, Deleted, ExampleOut,
        InteractionOut, ObjectRecordOut, PackOut, VerbOut,
    };
    use hoiclip::classifier::RowSources;
    use hoiclip::engine::detection::OFFLINE_DEADLINE;
    use hoiclip::engine::examples::{ExampleCrops, image_id, learn};
    use hoiclip::vocab::Pack;
    use hoiclip::vocab::store::{NewVerb, VocabStore};
    let database_url = args.database_url.as_str();
    runtime()?.block_on(async {
        let store =
            VocabStore::open(database_url, std::sync::Arc::new(ClipTokenizer::new()?)).await?;
        store.seed(&Pack::hico_det()).await?;
        store.seed(&Pack::v_coco()).await?;
        let deleted = |version| Deleted {
            vocabulary_version: version,
            classifier_version: None,
        };
        let none = RowSources::default();
        match args.command {
            VocabCommand::List {
                what,
                pack,
                row_sources,
                model,
            } => {
                let service = match row_sources {
                    true => Some(hoiclip::app::service(&model.settings(database_url)).await?),
                    false => None,
                };
                let sources = match &service {
                    Some(s) => s.classes().context("no classifier set")?.sources,
                    None => std::sync::Arc::new(RowSources::default()),
                };
                let info = service.as_ref().map(|s| s.info().clone());
                match what.as_str() {
                    "verbs" => store
                        .verbs()
                        .await?
                        .into_iter()
                        .try_for_each(|v| print_line(&VerbOut::new(v, &sources)))?,
                    "objects" => store
                        .objects()
                        .await?
                        .into_iter()
                        .try_for_each(|o| print_line(&ObjectRecordOut::new(o, &sources)))?,
                    "packs" => store
                        .packs()
                        .await?
                        .into_iter()
                        .try_for_each(|p| print_line(&PackOut::from(p)))?,
                    _ => store
                        .interactions(pack.as_deref())
                        .await?
                        .into_iter()
                        .try_for_each(|i| {
                            print_line(&InteractionOut::new(i, &sources, info.as_ref()))
                        })?,
                }
            }
            VocabCommand::AddExamples {
                verb,
                examples,
                replace,
                keep_orientation,
                model,
            } => {
                let settings = model.settings(database_url);
                let verb_id = verb_id(&store, &verb).await?;
                let service = hoiclip::app::service(&settings).await?;
                let res = service.clip_resolution();
                let mut crops = Vec::new();
                for example in examples.chunks(4) {
                    let [image, human, object_box, object] = example else {
                        anyhow::bail!("--example takes IMAGE HUMAN_BOX OBJECT_BOX OBJECT");
                    };
                    let bytes =
                        std::fs::read(image).with_context(|| format!("cannot read {image}"))?;
                    let decoded =
                        decode(&bytes, settings.api.decode).with_context(|| image.clone())?;
                    let decoded = match keep_orientation {
                        true => decoded,
                        false => orient(decoded, exif_orientation(&bytes)),
                    };
                    crops.push(
                        ExampleCrops::new(
                            &decoded,
                            image_id(&bytes),
                            parse_box(human)?,
                            parse_box(object_box)?,
                            object.clone(),
                            res,
                        )
                        .with_context(|| image.clone())?,
                    );
                }
                let (records, version) = learn(
                    service.as_ref(),
                    verb_id,
                    crops,
                    replace,
                    std::time::Instant::now() + OFFLINE_DEADLINE,
                )
                .await?;
                let set = service.refresh().await?;
                let fingerprint = service.vision_fingerprint();
                print_line(&CreatedExamples {
                    verb: VerbOut::new(store.verb(verb_id).await?, &set.sources),
                    examples: records
                        .into_iter()
                        .map(|e| ExampleOut::new(e, fingerprint))
                        .collect(),
                    vocabulary_version: version,
                    classifier_version: Some(set.version),
                })?;
            }
            VocabCommand::Examples { verb, model } => {
                let verb_id = verb_id(&store, &verb).await?;
                let service = hoiclip::app::service(&model.settings(database_url)).await?;
                let fingerprint = service.vision_fingerprint();
                store
                    .examples(verb_id)
                    .await?
                    .into_iter()
                    .try_for_each(|e| print_line(&ExampleOut::new(e, fingerprint)))?;
            }
            VocabCommand::RemoveExample { verb, id } => {
                let verb_id = verb_id(&store, &verb).await?;
                print_line(&deleted(store.remove_example(verb_id, id).await?))?;
            }
            VocabCommand::AddVerb {
                name,
                ing,
                objects,
                prompts,
                pack,
            } => {
                let prompts = prompts
                    .iter()
                    .map(|p| {
                        p.split_once('=')
                            .map(|(o, t)| (o.trim().to_string(), t.trim().to_string()))
                            .ok_or_else(|| {
                                anyhow::anyhow!("--prompt takes OBJECT=PROMPT, got {p:?}")
                            })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let (verb, interactions, version) = store
                    .add_verb(NewVerb {
                        name,
                        ing,
                        objects,
                        prompts,
                        pack,
                    })
                    .await?;
                print_line(&CreatedVerb {
                    verb: VerbOut::new(verb, &none),
                    interactions: interactions
                        .into_iter()
                        .map(|i| InteractionOut::new(i, &none, None))
                        .collect(),
                    vocabulary_version: version,
                    classifier_version: None,
                })?;
            }
            VocabCommand::AddObject { name, prompt } => {
                let (object, version) = store.add_object(&name, prompt.as_deref()).await?;
                print_line(&CreatedObject {
                    object: ObjectRecordOut::new(object, &none),
                    vocabulary_version: version,
                    classifier_version: None,
                })?;
            }
            VocabCommand::AddInteraction {
                verb,
                object,
                prompt,
                pack,
            } => {
                let (interaction, version) = store
                    .add_interaction(&verb, &object, prompt.as_deref(), pack.as_deref())
                    .await?;
                print_line(&CreatedInteraction {
                    interaction: InteractionOut::new(interaction, &none, None),
                    vocabulary_version: version,
                    classifier_version: None,
                })?;
            }
            VocabCommand::Remove { what, id } => {
                let version = match what.as_str() {
                    "verb" => store.remove_verb(id).await?,
                    "object" => store.remove_object(id).await?,
                    _ => store.remove_interaction(id).await?,
                };
                print_line(&deleted(version))?;
            }
            VocabCommand::Export { pack, out } => {
                let json = serde_json::to_string_pretty(&store.export_pack(&pack).await?)?;
                match out {
                    Some(path) => std::fs::write(&path, json)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                    None => println!("{json}"),
                }
            }
            VocabCommand::Import { file } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let pack = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a pack export", file.display()))?;
                print_line(&deleted(store.import_pack(&pack).await?))?;
            }
        }
        anyhow::Ok(())
    })
}

/// Prints one wire shape as a JSON line.
fn print_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// A verb's id by name.
async fn verb_id(store: &hoiclip::vocab::store::VocabStore, name: &str) -> anyhow::Result<i64> {
    store
        .verbs()
        .await?
        .into_iter()
        .find(|v| v.name == name)
        .map(|v| v.id)
        .with_context(|| format!("no verb `{name}`"))
}

/// "x1,y1,x2,y2" as a box.
fn parse_box(text: &str) -> anyhow::Result<[f32; 4]> {
    hoiclip::engine::examples::parse_box(text)
        .with_context(|| format!("a box is four numbers \"x1,y1,x2,y2\", not {text:?}"))
}
