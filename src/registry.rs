//! Strategies as plug-ins: every kind of strategy (placement, overlap, all-to-all algorithm) is a
//! small trait with one [`Registry`] listing its implementations by name. A strategy is built
//! from its own settings table (its knobs, with defaults for the keys left out), so a knob only
//! one strategy reads lives with that strategy and nowhere else.

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A strategy's settings as written in a scenario (`[sim.chunked]`) or gathered from flags.
pub type Settings = toml::Table;

/// The settings of a strategy without knobs: an empty table (any key is an error).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// A strategy that can be selected by name and built from its settings.
pub trait Plugin: Sized {
    /// The name scenarios and flags select it by; written nowhere else.
    const NAME: &'static str;
    /// Its knobs: keys left out take their defaults, unknown keys are errors.
    type Settings: DeserializeOwned + Default;

    /// The strategy with `settings`, or a message naming the knob that is out of range.
    fn with_settings(settings: Self::Settings) -> Result<Self, String>;

    /// The strategy built from a settings table.
    fn from_table(table: &Settings) -> Result<Self, String> {
        let settings = if table.is_empty() {
            Self::Settings::default()
        } else {
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| e.message().to_string())?
        };
        Self::with_settings(settings)
    }
}

/// One implementation of trait `T` in a [`Registry`].
pub struct Entry<T: ?Sized> {
    /// Its [`Plugin::NAME`].
    pub name: &'static str,
    /// Builds it from its settings table.
    pub build: fn(&Settings) -> Result<Box<T>, String>,
}

/// Every implementation of one strategy trait, by name.
pub struct Registry<T: ?Sized + 'static> {
    /// What the strategies are, for messages (`"overlap strategy"`).
    pub kind: &'static str,
    /// The implementations, in the order they are listed to users.
    pub entries: &'static [Entry<T>],
}

impl<T: ?Sized> Registry<T> {
    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|e| e.name)
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.name == name)
    }

    /// The strategy `name` built from `settings`; the error names the unknown strategy (listing
    /// the known ones) or the bad knob.
    pub fn build(&self, name: &str, settings: &Settings) -> Result<Named<T>, String> {
        let entry = self
            .entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| {
                format!(
                    "unknown {} `{name}`; known: {}",
                    self.kind,
                    self.names().collect::<Vec<_>>().join(", ")
                )
            })?;
        let strategy = (entry.build)(settings)
            .map_err(|message| format!("{} `{name}`: {message}", self.kind))?;
        Ok(Named {
            name: entry.name,
            strategy,
        })
    }
}

/// The [`Entry`] of plug-in `$plugin` in a registry of `dyn $trait`.
#[macro_export]
macro_rules! plugin_entry {
    ($trait:path, $plugin:ty) => {
        $crate::registry::Entry::<dyn $trait> {
            name: <$plugin as $crate::registry::Plugin>::NAME,
            build: |settings| {
                let plugin = <$plugin as $crate::registry::Plugin>::from_table(settings)?;
                Ok(Box::new(plugin))
            },
        }
    };
}

/// `Ok` when knob `knob`'s `value` is a non-negative number, else a message naming it.
pub fn non_negative(knob: &str, value: f64) -> Result<(), String> {
    if value >= 0.0 {
        Ok(())
    } else {
        Err(format!("`{knob}` = {value} must be a non-negative number"))
    }
}

/// `Ok` when knob `knob`'s `value` is a finite number above zero, else a message naming it.
pub fn positive(knob: &str, value: f64) -> Result<(), String> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(format!("`{knob}` = {value} must be a positive number"))
    }
}

/// A strategy built from a registry, with the name it was selected by.
#[derive(Debug)]
pub struct Named<T: ?Sized> {
    /// Its [`Plugin::NAME`].
    pub name: &'static str,
    /// The strategy.
    pub strategy: Box<T>,
}

impl<T: ?Sized> std::ops::Deref for Named<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.strategy
    }
}
