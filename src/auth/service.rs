//! Users: creation and the first-admin bootstrap. Login and tokens arrive with the identity
//! issue.

use entity::user;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait, PaginatorTrait};
use secrecy::{ExposeSecret, SecretString};

use super::password;
use crate::clock;

/// Username of the first administrator.
pub const FIRST_ADMIN: &str = "admin";

/// What `ensure_first_admin` did.
#[derive(Debug)]
pub enum Bootstrap {
    /// Users already existed; nothing was created.
    AlreadyInitialised,
    /// `admin` was created with the configured password.
    Created,
    /// `admin` was created with this generated password, to print once.
    CreatedWithGenerated(SecretString),
}

/// User accounts.
#[derive(Clone)]
pub struct UserService {
    db: DatabaseConnection,
}

impl UserService {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Creates `admin` when the user table is empty. Replicas starting together race on the
    /// unique username; the loser sees the winner's row and reports `AlreadyInitialised`.
    pub async fn ensure_first_admin(
        &self,
        configured: Option<&SecretString>,
    ) -> anyhow::Result<Bootstrap> {
        if user::Entity::find().count(&self.db).await? > 0 {
            return Ok(Bootstrap::AlreadyInitialised);
        }
        let (secret, generated) = match configured {
            Some(p) => (SecretString::from(p.expose_secret().to_owned()), false),
            None => (password::generate(), true),
        };
        let hash = password::hash(SecretString::from(secret.expose_secret().to_owned())).await?;
        let now = clock::now();
        let row = user::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            username: Set(FIRST_ADMIN.into()),
            password_hash: Set(hash),
            role: Set("admin".into()),
            tenant_id: Set(None),
            disabled: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
        };
        match user::Entity::insert(row).exec(&self.db).await {
            Ok(_) if generated => Ok(Bootstrap::CreatedWithGenerated(secret)),
            Ok(_) => Ok(Bootstrap::Created),
            Err(e)
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                Ok(Bootstrap::AlreadyInitialised)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Looks a user up by name.
    pub async fn find_by_username(&self, username: &str) -> anyhow::Result<Option<user::Model>> {
        use sea_orm::{ColumnTrait, QueryFilter};
        Ok(user::Entity::find()
            .filter(user::Column::Username.eq(username))
            .one(&self.db)
            .await?)
    }
}
