//! Package repositories and `extends`: how a stack entry becomes a chain of layers.
//!
//! A package's layers, most specific first: its stack entry; then the package file it builds
//! on (the entry's `extends = "OTHER"`, else `NAME.toml` if a repo has one); then the file that
//! file `extends`, and so on. A name is looked up in the repos in `[stack] repos` order, the
//! first repo holding `NAME.toml` winning (the others are recorded as shadowed). A chain that
//! comes back to a file already in it is a cycle, reported with the whole chain.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{FileId, Loc, RawPackage, Texts};
use crate::artifact::check_name;
use crate::stack::StackError;
use crate::IoContext;

/// One definition of a package (a stack entry or a package file) and the file it is in.
#[derive(Debug)]
pub(super) struct Layer {
    pub file: FileId,
    pub raw: RawPackage,
}

/// A stack package, resolved through the repos.
#[derive(Debug)]
pub(super) struct Definition {
    pub name: String,
    /// Where the stack entry names it.
    pub name_at: Loc,
    /// Indices into the resolver's layers, most specific first.
    pub layers: Vec<usize>,
    /// The file holding its definition: the repo's `NAME.toml` it was taken from, or the
    /// stack file when the stack entry defines it (alone or with an explicit `extends`).
    pub defined_in: PathBuf,
    /// The package files it inherits from, nearest first (not counting `defined_in`).
    pub extends: Vec<PathBuf>,
    /// Files of later repos hidden by the ones used, for every name the chain looked up.
    pub shadowed: Vec<PathBuf>,
}

/// The `[stack] repos` directories, in search order.
pub(super) struct Repos {
    dirs: Vec<PathBuf>,
}

/// A name looked up in the repos.
struct Found {
    /// The first repo's file, if any has one.
    first: Option<PathBuf>,
    /// The files of later repos that the first one hides.
    shadowed: Vec<PathBuf>,
}

impl Repos {
    /// Resolves each repo against `base` (the stack file's directory); each must be a
    /// directory.
    pub fn open(
        texts: &Texts,
        file: FileId,
        base: &Path,
        repos: Vec<Spanned<String>>,
    ) -> Result<Repos, StackError> {
        let mut dirs = Vec::with_capacity(repos.len());
        for repo in repos {
            let dir = base.join(repo.get_ref());
            if !fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
                return Err(texts.err(
                    file,
                    repo.span(),
                    format!(
                        "stack.repos: {:?} is not a directory (looked for {})",
                        repo.get_ref(),
                        dir.display()
                    ),
                ));
            }
            dirs.push(dir);
        }
        Ok(Repos { dirs })
    }

    /// The repos as listed in messages.
    fn shown(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The package file the first repo holding `name` has for it, if `name` is a valid name.
    pub fn file_of(&self, name: &str) -> Result<Option<PathBuf>, StackError> {
        if check_name(name).is_err() {
            return Ok(None);
        }
        Ok(self.find(name)?.first)
    }

    /// `NAME.toml` in each repo, first one first. `name` has passed `check_name`, so it is a
    /// single path component.
    fn find(&self, name: &str) -> Result<Found, StackError> {
        let mut found = Found {
            first: None,
            shadowed: Vec::new(),
        };
        for dir in &self.dirs {
            let path = dir.join(format!("{name}.toml"));
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => match found.first {
                    None => found.first = Some(path),
                    Some(_) => found.shadowed.push(path),
                },
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(crate::IoError::new("inspect package file", &path, source).into()),
            }
        }
        Ok(found)
    }
}

/// Reads package files (each once) and resolves stack entries into [`Definition`]s.
pub(super) struct Resolver<'a> {
    texts: &'a mut Texts,
    repos: &'a Repos,
    layers: Vec<Layer>,
    /// Package files read so far, by path.
    loaded: HashMap<PathBuf, usize>,
}

impl<'a> Resolver<'a> {
    pub fn new(texts: &'a mut Texts, repos: &'a Repos) -> Resolver<'a> {
        Resolver {
            texts,
            repos,
            layers: Vec::new(),
            loaded: HashMap::new(),
        }
    }

    /// Every layer read, for [`Definition::layers`].
    pub fn into_layers(self) -> Vec<Layer> {
        self.layers
    }

    /// The definition of the stack entry `raw` (in `file`), whose name `index_names` has
    /// checked.
    pub fn definition(&mut self, file: FileId, raw: RawPackage) -> Result<Definition, StackError> {
        let name_value = raw
            .name
            .as_ref()
            .expect("index_names checked every entry has a name");
        let name = name_value.get_ref().clone();
        let name_at = Loc {
            file,
            span: name_value.span(),
        };
        // Only the name (and overrides): the package must come from a repo.
        let self_contained =
            raw.template.is_some() || raw.build.is_some() || raw.files.is_some() || raw.kind.is_some();
        let explicit = raw
            .extends
            .as_ref()
            .map(|e| (e.get_ref().clone(), Loc { file, span: e.span() }));
        let entry_extends = explicit.is_some();
        self.layers.push(Layer { file, raw });
        let mut layers = vec![self.layers.len() - 1];
        let mut chain: Vec<(String, PathBuf)> = Vec::new();
        let mut shadowed = Vec::new();
        // The next name to look up, and where an `extends` asked for it (None: the entry's
        // own name, which need not be in any repo).
        let (mut wanted, mut asked_at) = match explicit {
            Some((other, at)) => (other, Some(at)),
            None => (name.clone(), None),
        };
        loop {
            if let Some(at) = &asked_at {
                check_name(&wanted)
                    .map_err(|e| self.texts.err_at(at, format!("package {name}: extends: {e}")))?;
            }
            let found = self.repos.find(&wanted)?;
            let Some(path) = found.first else {
                match &asked_at {
                    Some(at) => {
                        return Err(self.texts.err_at(
                            at,
                            format!(
                                "package {name}: extends {wanted:?}, which is in none of the repos{}",
                                self.repos_list()
                            ),
                        ))
                    }
                    None if !self_contained && !self.repos.dirs.is_empty() => {
                        return Err(self.texts.err_at(
                            &name_at,
                            format!(
                            "package {name} is in none of the repos{} and has no build, template or files",
                            self.repos_list()
                        ),
                        ))
                    }
                    None => break,
                }
            };
            if let Some(start) = chain.iter().position(|(_, p)| *p == path) {
                let at = asked_at
                    .as_ref()
                    .expect("a file found again was asked for by extends");
                let mut names: Vec<String> = chain[start..]
                    .iter()
                    .map(|(n, p)| format!("{n} ({})", p.display()))
                    .collect();
                names.push(wanted);
                return Err(self.texts.err_at(
                    at,
                    format!("package {name}: extends cycle: {}", names.join(" -> ")),
                ));
            }
            shadowed.extend(found.shadowed);
            let id = self.load(&path, &wanted)?;
            chain.push((wanted, path));
            layers.push(id);
            let layer = &self.layers[id];
            match &layer.raw.extends {
                Some(next) => {
                    wanted = next.get_ref().clone();
                    asked_at = Some(Loc {
                        file: layer.file,
                        span: next.span(),
                    });
                }
                None => break,
            }
        }
        let mut files = chain.into_iter().map(|(_, p)| p);
        let defined_in = if entry_extends { None } else { files.next() }
            .unwrap_or_else(|| PathBuf::from(self.texts.name(file)));
        Ok(Definition {
            name,
            name_at,
            layers,
            defined_in,
            extends: files.collect(),
            shadowed,
        })
    }

    fn repos_list(&self) -> String {
        if self.repos.dirs.is_empty() {
            " (the stack lists no [stack] repos)".to_string()
        } else {
            format!(": {}", self.repos.shown())
        }
    }

    /// Reads and parses the package file `path` for the package `name` (once).
    fn load(&mut self, path: &Path, name: &str) -> Result<usize, StackError> {
        if let Some(&id) = self.loaded.get(path) {
            return Ok(id);
        }
        let text = fs::read_to_string(path).io_context("read package file", path)?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let file = self.texts.add(path.display().to_string(), dir, text);
        let raw: RawPackage = self.texts.parse_toml(file)?;
        if let Some(given) = &raw.name {
            return Err(self.texts.err(
                file,
                given.span(),
                format!("a package file is named by its file name ({name}); remove name"),
            ));
        }
        self.layers.push(Layer { file, raw });
        let id = self.layers.len() - 1;
        self.loaded.insert(path.to_path_buf(), id);
        Ok(id)
    }
}
