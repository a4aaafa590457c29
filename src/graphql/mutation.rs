//! Mutations.

use async_graphql::{Context, ID, InputObject, Object};

use super::types::{GqlRoleGrant, GqlUnit, GqlUnitRole, GqlUser, LoginPayload};
use super::{actor, caller, state};
use crate::agencies::{self, NewUser, UserChange};
use crate::auth::{self, ClientAddress};
use crate::clock::from_micros;
use crate::http::SESSION_COOKIE;
use crate::ids::{UnitId, UserId};
use crate::policy::{self, Action, Resource};

#[derive(Default)]
pub struct CoreMutation;

#[derive(InputObject)]
pub struct CreateUserInput {
    pub email: String,
    pub display_name: String,
    /// The initial password (at least 12 characters); the user must change it at first login.
    pub password: String,
    #[graphql(default)]
    pub is_admin: bool,
}

fn cookie(ctx: &Context<'_>, value: &str, max_age_secs: u64) -> String {
    let secure = if state(ctx).config.cookie_secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

#[Object]
impl CoreMutation {
    /// Signs in; returns a session token, also set as an HttpOnly cookie.
    async fn login(&self, ctx: &Context<'_>, email: String, password: String) -> async_graphql::Result<LoginPayload> {
        let state = state(ctx);
        let address = caller(ctx).map_or_else(|| ClientAddress("unknown".into()), |c| c.address.clone());
        let outcome = auth::login(state, &email, &password, &address).await?;
        ctx.append_http_header("Set-Cookie", cookie(ctx, outcome.token.expose(), state.config.session_max_secs));
        Ok(LoginPayload {
            token: outcome.token.expose().to_owned(),
            user: GqlUser(outcome.user),
            expires_at: from_micros(outcome.expires_at),
        })
    }

    /// Ends the current session.
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let actor = actor(ctx)?;
        policy::authorize(actor, Action::ManageOwnAccount, Resource::user(actor.agency_id, actor.user_id, &[]))?;
        auth::logout(state(ctx), actor).await?;
        ctx.append_http_header("Set-Cookie", cookie(ctx, "", 0));
        Ok(true)
    }

    /// Changes the caller's password; every other session of the account ends.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> async_graphql::Result<GqlUser> {
        let actor = actor(ctx)?;
        policy::authorize(actor, Action::ManageOwnAccount, Resource::user(actor.agency_id, actor.user_id, &[]))?;
        let state = state(ctx);
        auth::change_password(state, actor, &current_password, &new_password).await?;
        let mut me = actor.clone();
        me.must_change_password = false;
        Ok(GqlUser(agencies::user(state, &me, actor.user_id).await?))
    }

    async fn create_unit(
        &self,
        ctx: &Context<'_>,
        name: String,
        parent_id: Option<ID>,
    ) -> async_graphql::Result<GqlUnit> {
        let parent = parent_id.map(|p| UnitId::parse(&p)).transpose()?;
        Ok(GqlUnit(agencies::create_unit(state(ctx), actor(ctx)?, &name, parent).await?))
    }

    async fn rename_unit(&self, ctx: &Context<'_>, id: ID, name: String) -> async_graphql::Result<GqlUnit> {
        Ok(GqlUnit(agencies::rename_unit(state(ctx), actor(ctx)?, UnitId::parse(&id)?, &name).await?))
    }

    /// Moves a unit under another parent, or to the top with no parent.
    async fn move_unit(&self, ctx: &Context<'_>, id: ID, parent_id: Option<ID>) -> async_graphql::Result<GqlUnit> {
        let parent = parent_id.map(|p| UnitId::parse(&p)).transpose()?;
        Ok(GqlUnit(agencies::move_unit(state(ctx), actor(ctx)?, UnitId::parse(&id)?, parent).await?))
    }

    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> async_graphql::Result<GqlUser> {
        let new = NewUser {
            email: &input.email,
            display_name: &input.display_name,
            password: &input.password,
            is_admin: input.is_admin,
        };
        Ok(GqlUser(agencies::create_user(state(ctx), actor(ctx)?, new).await?))
    }

    async fn rename_user(&self, ctx: &Context<'_>, id: ID, display_name: String) -> async_graphql::Result<GqlUser> {
        let change = UserChange::DisplayName(&display_name);
        Ok(GqlUser(agencies::update_user(state(ctx), actor(ctx)?, UserId::parse(&id)?, change).await?))
    }

    /// Grants or removes agency administrator rights.
    async fn set_administrator(&self, ctx: &Context<'_>, id: ID, is_admin: bool) -> async_graphql::Result<GqlUser> {
        let change = UserChange::Administrator(is_admin);
        Ok(GqlUser(agencies::update_user(state(ctx), actor(ctx)?, UserId::parse(&id)?, change).await?))
    }

    /// Disables an account (its sessions end and it cannot sign in) or enables it again.
    async fn set_user_disabled(&self, ctx: &Context<'_>, id: ID, disabled: bool) -> async_graphql::Result<GqlUser> {
        let change = UserChange::Disabled(disabled);
        Ok(GqlUser(agencies::update_user(state(ctx), actor(ctx)?, UserId::parse(&id)?, change).await?))
    }

    /// Sets a new password for another user, to be changed at their next login.
    async fn reset_password(&self, ctx: &Context<'_>, id: ID, password: String) -> async_graphql::Result<GqlUser> {
        Ok(GqlUser(agencies::reset_password(state(ctx), actor(ctx)?, UserId::parse(&id)?, &password).await?))
    }

    /// Grants a role on a unit (and so on its subtree), replacing any role the user held there.
    async fn grant_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        unit_id: ID,
        role: GqlUnitRole,
    ) -> async_graphql::Result<GqlRoleGrant> {
        let grant = agencies::grant_role(
            state(ctx),
            actor(ctx)?,
            UserId::parse(&user_id)?,
            UnitId::parse(&unit_id)?,
            role.into(),
        )
        .await?;
        Ok(GqlRoleGrant(grant))
    }

    /// Removes the user's role on the unit; false when there was none.
    async fn revoke_role(&self, ctx: &Context<'_>, user_id: ID, unit_id: ID) -> async_graphql::Result<bool> {
        Ok(agencies::revoke_role(state(ctx), actor(ctx)?, UserId::parse(&user_id)?, UnitId::parse(&unit_id)?).await?)
    }
}
