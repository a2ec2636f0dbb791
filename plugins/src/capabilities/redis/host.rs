//! The `wharf:plugin/redis` binding: a plugin's command goes to its tenant's [`super::TenantRedis`]
//! off the plugin CPU, counted and traced as a host call.

use crate::bindings::wharf::plugin::redis::{Host, RedisValue};
use crate::bindings::wharf::plugin::types::HostError;
use crate::state::{off_cpu, PluginState};

impl Host for PluginState {
    async fn command(&mut self, name: String, args: Vec<Vec<u8>>) -> Result<RedisValue, HostError> {
        let call = self.host_call("redis.command");
        let io = async {
            let caps = self.capabilities()?;
            let redis = self.uncharged_if(!caps.redis_ready(), caps.redis()).await?;
            redis.command(&name, args).await
        };
        let result = off_cpu(&self.cpu, io).await;
        call.finish(self, &result);
        result.map_err(Into::into)
    }
}
