//! `quota_group!`: a group of quotas declared once. Each quota's line gives its field, type,
//! default, the name the API, the store and the metrics use, and its bounds; from it come the
//! struct (serde names, docs), its `Default`, its bounds check, its row in the quota table
//! (`Quotas::table`, which the docs and the CLI show) and a typed name for metric labels
//! (`RedisQuotas::NAMES.commands_per_second`), so a quota's name is written once.

/// A quota's name as the API, the store and the metrics spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaName(&'static str);

impl QuotaName {
    pub const fn as_str(self) -> &'static str {
        self.0
    }
    #[doc(hidden)]
    pub const fn new(name: &'static str) -> QuotaName {
        QuotaName(name)
    }
}

impl std::fmt::Display for QuotaName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// One quota as documented: name, default, bounds, meaning.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct QuotaRow {
    pub name: String,
    pub default: String,
    /// `None` for a quota that is a choice, not a number (`rate_limit_scope`).
    pub min: Option<u64>,
    pub max: Option<u64>,
    pub doc: String,
}

/// How a quota's value reads as a number for its bounds (`None`: it has none).
pub(crate) trait QuotaValue: std::fmt::Debug {
    fn as_u64(&self) -> Option<u64>;
}

impl QuotaValue for u32 {
    fn as_u64(&self) -> Option<u64> {
        Some(u64::from(*self))
    }
}

impl QuotaValue for u64 {
    fn as_u64(&self) -> Option<u64> {
        Some(*self)
    }
}

/// Bounds of a numeric quota (both inclusive).
pub(crate) const fn within(min: u64, max: u64) -> Option<(u64, u64)> {
    Some((min, max))
}

/// A quota that is a choice, not a number.
pub(crate) const fn unbounded() -> Option<(u64, u64)> {
    None
}

/// Declares one group of quotas; see the module docs.
macro_rules! quota_group {
    (
        $(#[doc = $gdoc:literal])*
        pub struct $group:ident / $names:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident: $ty:ty = $default:expr, $name:literal, $bounds:expr;
            )+
        }
    ) => {
        $(#[doc = $gdoc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(default)]
        pub struct $group {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $name)]
                pub $field: $ty,
            )+
        }

        /// The typed name of each quota of the group, for metric labels and errors.
        #[derive(Debug, Clone, Copy)]
        pub struct $names {
            $(pub $field: $crate::quotas::QuotaName,)+
        }

        impl $group {
            pub const NAMES: $names = $names {
                $($field: $crate::quotas::QuotaName::new($name),)+
            };

            /// Each quota's name, value and bounds.
            fn bounds(&self) -> Vec<(&'static str, Option<u64>, Option<(u64, u64)>)> {
                use $crate::quotas::declare::QuotaValue;
                vec![$(($name, self.$field.as_u64(), $bounds),)+]
            }

            /// The group's rows of the quota table.
            fn rows() -> Vec<$crate::quotas::QuotaRow> {
                let d = $group::default();
                let mut rows = Vec::new();
                $(
                    let bounds: Option<(u64, u64)> = $bounds;
                    rows.push($crate::quotas::QuotaRow {
                        name: $name.to_string(),
                        default: format!("{:?}", d.$field).to_lowercase(),
                        min: bounds.map(|b| b.0),
                        max: bounds.map(|b| b.1),
                        doc: [$($doc.trim()),*].join(" "),
                    });
                )+
                rows
            }
        }

        impl Default for $group {
            fn default() -> Self {
                $group {
                    $($field: $default,)+
                }
            }
        }
    };
}

pub(crate) use quota_group;

/// Declares the tenant's quotas from its groups: the struct (each group flattened, so the
/// stored JSON and the API are one flat object), its default, every bound checked, the table.
macro_rules! quota_groups {
    (
        $(#[doc = $doc:literal])*
        pub struct $all:ident { $($field:ident: $group:ident,)+ }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(default)]
        pub struct $all {
            $(
                #[serde(flatten)]
                pub $field: $group,
            )+
        }

        impl $all {
            /// Every quota: name, default, bounds and meaning, in declaration order.
            pub fn table() -> Vec<$crate::quotas::QuotaRow> {
                [$($group::rows(),)+].concat()
            }

            /// Each quota's name, value and bounds.
            fn bounds(&self) -> Vec<(&'static str, Option<u64>, Option<(u64, u64)>)> {
                [$(self.$field.bounds(),)+].concat()
            }
        }
    };
}

pub(crate) use quota_groups;

/// The quota table as docs/quotas.md shows it.
pub(crate) fn markdown(rows: &[QuotaRow]) -> String {
    let mut out = String::from(
        "# Quotas\n\nWhat each tenant may spend; generated from `tenancy/src/quotas/mod.rs` (the \
         test `quotas::tests::docs_list_every_quota` fails when this file is stale; \
         `WHARF_BLESS=1` rewrites it). Set with `wharf tenant set-quota TENANT --set NAME=VALUE` or \
         `PATCH /v1/tenants/{tenant}/quotas`.\n\n| quota | default | range | meaning |\n|---|---|---|---|\n",
    );
    for r in rows {
        let range = match (r.min, r.max) {
            (Some(min), Some(max)) => format!("{min} – {max}"),
            _ => "—".into(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            r.name, r.default, range, r.doc
        ));
    }
    out
}
