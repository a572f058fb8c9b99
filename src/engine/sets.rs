//! Classifier sets as the rest of the program sees them. The tensors of a set stay with
//! the engine; requests carry a [`ClassifierHandle`] (version, rows and a key) and the worker
//! finds the tensors by that key in the [`ClassifierSets`]. A set lives while a handle to
//! it does, so a request is scored with exactly the set it was validated against, even if
//! the vocabulary changes while it waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::classifier::{ClassRow, ClassifierSet, LearnedRow, RowSources};
use crate::model::kernels::ModelBackend;
use crate::vocab::store::VocabSnapshot;

/// Identity of one registered set: the allocation, compared by address (an address is
/// only reused once no handle to the old set is left).
#[derive(Debug)]
struct SetKey;

/// A classifier set seen from outside the worker: no tensors.
#[derive(Debug, Clone)]
pub struct ClassifierHandle {
    /// The vocabulary version it was built from (0: the checkpoint's own classifier).
    pub version: i64,
    pub rows: Arc<Vec<ClassRow>>,
    /// Vocabulary rows the set leaves out because they cannot be embedded.
    pub skipped: Arc<Vec<String>>,
    /// Where each verb, object and interaction row of the set came from.
    pub sources: Arc<RowSources>,
    key: Arc<SetKey>,
}

impl ClassifierHandle {
    /// A handle whose set is registered nowhere: for runners that score without tensors
    /// (tests); the real runner answers such a request with an error.
    pub fn detached(version: i64, rows: Vec<ClassRow>) -> Self {
        Self {
            version,
            rows: Arc::new(rows),
            skipped: Arc::new(Vec::new()),
            sources: Arc::default(),
            key: Arc::new(SetKey),
        }
    }
}

/// What a set is built from.
pub enum SetSource {
    /// The checkpoint's own classifier and pack (what evaluation scores).
    Checkpoint,
    /// A vocabulary snapshot, with the text embedding of every prompt it needs
    /// (`classifier::prompts_needed`); prompts without one are skipped rows.
    Vocabulary {
        snapshot: Arc<VocabSnapshot>,
        embeddings: Arc<HashMap<String, Vec<f32>>>,
        /// Verb rows made from stored examples, by verb id (verbs without trained rows
        /// take these before their text rows).
        verb_rows: Arc<HashMap<i64, LearnedRow>>,
    },
}

type Entry<B> = (Weak<SetKey>, Arc<ClassifierSet<B>>);

/// The sets a worker scores with, by key. Entries whose handles are all gone are dropped
/// at the next registration or lookup, freeing their device memory.
pub struct ClassifierSets<B: ModelBackend> {
    entries: Arc<Mutex<Vec<Entry<B>>>>,
}

impl<B: ModelBackend> Clone for ClassifierSets<B> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
        }
    }
}

impl<B: ModelBackend> Default for ClassifierSets<B> {
    fn default() -> Self {
        Self {
            entries: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<B: ModelBackend> ClassifierSets<B> {
    /// Keeps `set` and returns the handle requests carry to be scored with it.
    pub fn register(&self, set: Arc<ClassifierSet<B>>) -> ClassifierHandle {
        let key = Arc::new(SetKey);
        let handle = ClassifierHandle {
            version: set.version,
            rows: set.rows.clone(),
            skipped: Arc::new(set.skipped.clone()),
            sources: set.sources.clone(),
            key: key.clone(),
        };
        let mut entries = self.lock();
        entries.retain(|(k, _)| k.strong_count() > 0);
        entries.push((Arc::downgrade(&key), set));
        handle
    }

    /// The set behind `handle`, if it was registered here.
    pub fn get(&self, handle: &ClassifierHandle) -> Option<Arc<ClassifierSet<B>>> {
        let target = Arc::downgrade(&handle.key);
        let mut entries = self.lock();
        entries.retain(|(k, _)| k.strong_count() > 0);
        entries
            .iter()
            .find(|(k, _)| k.ptr_eq(&target))
            .map(|(_, set)| set.clone())
    }

    /// Sets held (tests check that replaced sets are freed).
    pub fn len(&self) -> usize {
        let mut entries = self.lock();
        entries.retain(|(k, _)| k.strong_count() > 0);
        entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry<B>>> {
        // The vector is valid after any panic (pushes and retains are atomic for it).
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
