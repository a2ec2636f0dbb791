//! The `wharf:plugin/sql` binding: a plugin's statement goes to its tenant's
//! [`super::TenantSql`] off the plugin CPU, counted and traced as a host call.

use crate::bindings::wharf::plugin::sql::{Host, RowSet, SqlValue};
use crate::bindings::wharf::plugin::types::HostError;
use crate::state::{off_cpu, PluginState};

impl Host for PluginState {
    async fn query(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
    ) -> Result<RowSet, HostError> {
        let call = self.host_call("sql.query");
        let io = async {
            let caps = self.capabilities()?;
            let sql = self.uncharged_if(!caps.sql_ready(), caps.sql()).await?;
            sql.query(&statement, params).await
        };
        let result = off_cpu(&self.cpu, io).await;
        call.finish(self, &result);
        result.map_err(Into::into)
    }

    async fn execute(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
    ) -> Result<u64, HostError> {
        let call = self.host_call("sql.execute");
        let io = async {
            let caps = self.capabilities()?;
            let sql = self.uncharged_if(!caps.sql_ready(), caps.sql()).await?;
            sql.execute(&statement, params).await
        };
        let result = off_cpu(&self.cpu, io).await;
        call.finish(self, &result);
        result.map_err(Into::into)
    }
}
