//! `wharf:plugin/redis`: commands against the tenant's namespaced Redis (see
//! `wharf_tenancy::backends::redis` for the allow-list, quotas and isolation).

use crate::bindings::wharf::plugin::redis::{Host, RedisScalar, RedisValue};
use crate::bindings::wharf::plugin::types::HostError;
use crate::host::PluginState;
use wharf_tenancy::backends::redis::Reply;

impl Host for PluginState {
    async fn command(&mut self, name: String, args: Vec<Vec<u8>>) -> Result<RedisValue, HostError> {
        let function = "redis.command";
        let call = self.host_call(function);
        let io = async {
            match &self.backends {
                None => Err(wharf_tenancy::backends::HostError::BackendUnavailable),
                Some(b) => match b.redis().await {
                    Ok(redis) => redis.command(&name, args).await,
                    Err(e) => Err(e),
                },
            }
        };
        let result = super::off_cpu(&self.cpu, io).await;
        call.finish(self, &result);
        result.map(to_wit).map_err(super::to_wit_error)
    }
}

fn to_wit(r: Reply) -> RedisValue {
    match r {
        Reply::Nil => RedisValue::Nil,
        Reply::Status(s) => RedisValue::Status(s),
        Reply::Int(i) => RedisValue::Int(i),
        Reply::Bulk(b) => RedisValue::Bulk(b),
        Reply::Array(items) => RedisValue::Array(
            items
                .into_iter()
                .map(|i| match i {
                    Reply::Nil | Reply::Array(_) => RedisScalar::Nil,
                    Reply::Status(s) => RedisScalar::Status(s),
                    Reply::Int(i) => RedisScalar::Int(i),
                    Reply::Bulk(b) => RedisScalar::Bulk(b),
                })
                .collect(),
        ),
    }
}
