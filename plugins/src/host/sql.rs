//! `wharf:plugin/sql`: statements in the tenant's own schema or database file (see
//! `wharf_tenancy::backends::sql` for provisioning, quotas and isolation).

use crate::bindings::wharf::plugin::sql::{Host, RowSet, SqlValue};
use crate::bindings::wharf::plugin::types::HostError;
use crate::host::PluginState;
use wharf_tenancy::backends::sql as backend;

impl Host for PluginState {
    async fn query(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
    ) -> Result<RowSet, HostError> {
        let call = self.host_call("sql.query");
        let io = async {
            match self.sql().await {
                Ok(sql) => {
                    sql.query(&statement, params.into_iter().map(from_wit).collect())
                        .await
                }
                Err(e) => Err(e),
            }
        };
        let result = super::off_cpu(&self.cpu, io).await;
        call.finish(self, &result);
        result
            .map(|rs| RowSet {
                columns: rs.columns,
                rows: rs
                    .rows
                    .into_iter()
                    .map(|r| r.into_iter().map(to_wit).collect())
                    .collect(),
            })
            .map_err(super::to_wit_error)
    }

    async fn execute(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
    ) -> Result<u64, HostError> {
        let call = self.host_call("sql.execute");
        let io = async {
            match self.sql().await {
                Ok(sql) => {
                    sql.execute(&statement, params.into_iter().map(from_wit).collect())
                        .await
                }
                Err(e) => Err(e),
            }
        };
        let result = super::off_cpu(&self.cpu, io).await;
        call.finish(self, &result);
        result.map_err(super::to_wit_error)
    }
}

impl PluginState {
    async fn sql(&self) -> Result<&backend::TenantSql, wharf_tenancy::backends::HostError> {
        match &self.backends {
            None => Err(wharf_tenancy::backends::HostError::BackendUnavailable),
            Some(b) => b.sql().await,
        }
    }
}

fn from_wit(v: SqlValue) -> backend::SqlValue {
    match v {
        SqlValue::Null => backend::SqlValue::Null,
        SqlValue::Boolean(b) => backend::SqlValue::Bool(b),
        SqlValue::Int64(i) => backend::SqlValue::Int(i),
        SqlValue::Float64(f) => backend::SqlValue::Float(f),
        SqlValue::Text(t) => backend::SqlValue::Text(t),
        SqlValue::Bytes(b) => backend::SqlValue::Bytes(b),
    }
}

fn to_wit(v: backend::SqlValue) -> SqlValue {
    match v {
        backend::SqlValue::Null => SqlValue::Null,
        backend::SqlValue::Bool(b) => SqlValue::Boolean(b),
        backend::SqlValue::Int(i) => SqlValue::Int64(i),
        backend::SqlValue::Float(f) => SqlValue::Float64(f),
        backend::SqlValue::Text(t) => SqlValue::Text(t),
        backend::SqlValue::Bytes(b) => SqlValue::Bytes(b),
    }
}
