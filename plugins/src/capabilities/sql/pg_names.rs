//! What a tenant's Postgres database and role are called. `pg_database` and `pg_roles` are
//! cluster-wide catalogs every tenant can read, so a name derived from the tenant id would list
//! the operator's customers to each of them. A new tenant gets a random name instead
//! (`wharf_` + 96 random bits in hex); the mapping is kept in a table of the admin database,
//! beside the databases it names, so every node finds the same name, and only the admin role
//! may read it. Tenants provisioned before keep their old id-derived name (renaming a database
//! needs every session on it closed, across the fleet): purge and provision them again to move.

use rand::Rng;
use sha2::Digest;
use sqlx::PgConnection;

/// The name before names were opaque: `wharf_t_` and the id (hashed when too long).
fn legacy_name(tenant: &str) -> String {
    let plain = format!("wharf_t_{}", tenant.replace('-', "_"));
    if plain.len() <= 63 {
        return plain;
    }
    let digest = hex::encode(sha2::Sha256::digest(tenant.as_bytes()));
    format!("{}_{}", &plain[..46], &digest[..16])
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS wharf_tenant_databases (\
     tenant TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
     created_at TIMESTAMPTZ NOT NULL DEFAULT now()); \
     REVOKE ALL ON wharf_tenant_databases FROM PUBLIC";

/// Postgres's codes for "already exists" when nodes create the table at once.
fn raced(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if matches!(d.code().as_deref(), Some("23505") | Some("42P07") | Some("42710")))
}

async fn ensure_table(admin: &mut PgConnection) -> Result<(), sqlx::Error> {
    match sqlx::raw_sql(TABLE).execute(&mut *admin).await {
        Err(e) if !raced(&e) => Err(e),
        _ => Ok(()),
    }
}

/// The tenant's name, chosen now if it has none (on the admin connection).
pub(super) async fn resolve(admin: &mut PgConnection, tenant: &str) -> Result<String, sqlx::Error> {
    ensure_table(admin).await?;
    if let Some(name) = lookup_on(admin, tenant).await? {
        return Ok(name);
    }
    let legacy = legacy_name(tenant);
    let has_legacy: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(&legacy)
            .fetch_optional(&mut *admin)
            .await?;
    let fresh = match has_legacy {
        Some(_) => legacy,
        None => format!("wharf_{:024x}", rand::rng().random::<u128>() >> 32),
    };
    // A node choosing at the same moment may win: the first insert is everyone's name.
    sqlx::query(
        "INSERT INTO wharf_tenant_databases (tenant, name) VALUES ($1, $2) \
         ON CONFLICT (tenant) DO NOTHING",
    )
    .bind(tenant)
    .bind(&fresh)
    .execute(&mut *admin)
    .await?;
    Ok(lookup_on(admin, tenant).await?.unwrap_or(fresh))
}

async fn lookup_on(admin: &mut PgConnection, tenant: &str) -> Result<Option<String>, sqlx::Error> {
    let name: Option<String> =
        sqlx::query_scalar("SELECT name FROM wharf_tenant_databases WHERE tenant = $1")
            .bind(tenant)
            .fetch_optional(&mut *admin)
            .await?;
    // Names go into statements unquoted: only Wharf's own shape is used.
    match name {
        Some(n) if !is_wharf_name(&n) => Err(sqlx::Error::Protocol(format!(
            "wharf_tenant_databases names {n:?} for tenant {tenant:?}, not a name Wharf gives"
        ))),
        other => Ok(other),
    }
}

fn is_wharf_name(n: &str) -> bool {
    n.len() <= 63
        && n.starts_with("wharf_")
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Every name the tenant's data may live under: its name and the legacy one (what a purge
/// drops before it [`forget`]s the mapping, so a failed purge can be retried).
pub(super) async fn names_of(
    admin: &mut PgConnection,
    tenant: &str,
) -> Result<Vec<String>, sqlx::Error> {
    ensure_table(admin).await?;
    let mut names = vec![legacy_name(tenant)];
    if let Some(name) = lookup_on(admin, tenant).await? {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Forgets the tenant's name: a tenant created later with its id gets a new one.
pub(super) async fn forget(admin: &mut PgConnection, tenant: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM wharf_tenant_databases WHERE tenant = $1")
        .bind(tenant)
        .execute(&mut *admin)
        .await?;
    Ok(())
}

/// The tenant's database and role name, if it was provisioned (tests, operators' tools).
pub async fn lookup(admin_url: &str, tenant: &str) -> Result<Option<String>, sqlx::Error> {
    use sqlx::Connection;
    let mut admin = PgConnection::connect(admin_url).await?;
    ensure_table(&mut admin).await?;
    let name = lookup_on(&mut admin, tenant).await;
    let _ = admin.close().await;
    name
}

#[cfg(test)]
mod tests {
    use super::{is_wharf_name, legacy_name};

    #[test]
    fn names_are_wharfs_own_shape() {
        assert_eq!(legacy_name("acme-eu"), "wharf_t_acme_eu");
        assert!(is_wharf_name(&legacy_name(&"x".repeat(63))));
        assert!(is_wharf_name("wharf_0123456789abcdef01234567"));
        assert!(!is_wharf_name("wharf_x; DROP ROLE postgres"));
        assert!(!is_wharf_name("postgres"));
    }
}
