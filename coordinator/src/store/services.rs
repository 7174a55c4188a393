//! The `services` table: what each agent exposes, snapshotted into shares.

use connect_api::{Protocol, Route};
use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// Adds a service. Returns false when the agent already has one of that name.
    pub async fn insert_service(&self, agent_id: &str, route: &Route) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO services (agent_id, name, target, port, protocol) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (agent_id, name) DO NOTHING",
        )
        .bind(agent_id)
        .bind(&route.name)
        .bind(&route.target)
        .bind(i64::from(route.port))
        .bind(route.protocol.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn services(&self, agent_id: &str) -> Result<Vec<Route>, StoreError> {
        sqlx::query(
            "SELECT name, target, port, protocol FROM services WHERE agent_id = $1 ORDER BY name",
        )
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let protocol: String = row.try_get("protocol")?;
            Ok(Route {
                name: row.try_get("name")?,
                target: row.try_get("target")?,
                port: u16::try_from(row.try_get::<i64, _>("port")?)
                    .map_err(|_| StoreError::Corrupt("service port out of range".into()))?,
                protocol: if protocol == "udp" {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
            })
        })
        .collect()
    }

    /// Returns whether a service of that name existed.
    pub async fn delete_service(&self, agent_id: &str, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM services WHERE agent_id = $1 AND name = $2")
            .bind(agent_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
