//! Reading the database's own properties from the catalogs, for the manifest: owner, encoding
//! and locale (provider and provider locale where the server has them), connection limit,
//! the ACL (`aclexplode`), the settings of `pg_db_role_setting` for this database and its
//! comment. Run in the backup's exported snapshot, beside the row counts, so they describe
//! the dumped state. Read-only, and version-agnostic: columns that only some PostgreSQL versions
//! have are read through `to_jsonb(pg_database)`.
//!
//! Only [`group_acl`] and [`split_setting`] are pure; [`read`] queries the server.

use crate::archive::manifest::{DatabaseProperties, Grant, Setting, provider_name};
use crate::error::Result;
use tokio_postgres::Client;

/// The properties of the connection's current database.
pub async fn read(client: &Client) -> Result<DatabaseProperties> {
    let row = client
        .query_one(
            "SELECT pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text,
                    d.datcollate::text, d.datctype::text,
                    j ->> 'datlocprovider',
                    coalesce(j ->> 'datlocale', j ->> 'daticulocale'),
                    j ->> 'daticurules',
                    d.datconnlimit, d.datacl IS NULL,
                    shobj_description(d.oid, 'pg_database')
             FROM pg_database d CROSS JOIN LATERAL to_jsonb(d) j
             WHERE d.datname = current_database()",
            &[],
        )
        .await?;
    let no_acl: bool = row.get(8);
    let acl = if no_acl {
        None
    } else {
        let rows = client
            .query(
                "SELECT CASE WHEN a.grantee = 0 THEN NULL
                             ELSE pg_get_userbyid(a.grantee)::text END,
                        pg_get_userbyid(a.grantor)::text, a.privilege_type, a.is_grantable
                 FROM pg_database d
                 CROSS JOIN LATERAL aclexplode(d.datacl)
                      WITH ORDINALITY a(grantor, grantee, privilege_type, is_grantable, n)
                 WHERE d.datname = current_database()
                 ORDER BY a.n",
                &[],
            )
            .await?;
        Some(group_acl(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect(),
        ))
    };
    let rows = client
        .query(
            "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole)::text END,
                    s.setconfig
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
             WHERE d.datname = current_database()
             ORDER BY s.setrole <> 0, 1",
            &[],
        )
        .await?;
    let mut settings = Vec::new();
    for r in &rows {
        let role: Option<String> = r.get(0);
        let config: Option<Vec<String>> = r.get(1);
        for item in config.unwrap_or_default() {
            if let Some((name, value)) = split_setting(&item) {
                settings.push(Setting {
                    role: role.clone(),
                    name,
                    value,
                });
            }
        }
    }
    let provider: Option<String> = row.get(4);
    let connection_limit: i32 = row.get(7);
    Ok(DatabaseProperties {
        owner: row.get(0),
        encoding: row.get(1),
        collate: row.get(2),
        ctype: row.get(3),
        locale_provider: provider.map(|p| provider_name(&p)),
        provider_locale: row.get(5),
        icu_rules: row.get(6),
        connection_limit: (connection_limit >= 0).then_some(connection_limit),
        acl,
        settings,
        comment: row.get(9),
    })
}

/// `aclexplode` rows (grantee or `None` for PUBLIC, grantor, privilege, grantable), one per
/// privilege, grouped into grants in their first-seen order.
pub fn group_acl(rows: Vec<(Option<String>, String, String, bool)>) -> Vec<Grant> {
    let mut out: Vec<Grant> = Vec::new();
    for (grantee, grantor, privilege, grantable) in rows {
        match out
            .iter_mut()
            .find(|g| g.grantee == grantee && g.grantor == grantor && g.grantable == grantable)
        {
            Some(g) => g.privileges.push(privilege),
            None => out.push(Grant {
                grantee,
                grantor,
                privileges: vec![privilege],
                grantable,
            }),
        }
    }
    out
}

/// One `setconfig` item, `name=value`, split at the first `=` (names have none).
pub fn split_setting(item: &str) -> Option<(String, String)> {
    let (name, value) = item.split_once('=')?;
    (!name.is_empty()).then(|| (name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_rows_are_grouped_per_grantee_grantor_and_grant_option() {
        let row = |grantee: Option<&str>, p: &str, g: bool| {
            (
                grantee.map(String::from),
                "own".to_string(),
                p.to_string(),
                g,
            )
        };
        let grants = group_acl(vec![
            row(Some("own"), "CREATE", false),
            row(Some("own"), "CONNECT", false),
            row(None, "TEMPORARY", false),
            row(Some("app"), "CONNECT", true),
            row(Some("app"), "TEMPORARY", false),
        ]);
        assert_eq!(grants.len(), 4);
        assert_eq!(grants[0].privileges, ["CREATE", "CONNECT"]);
        assert_eq!(grants[1].grantee, None);
        assert_eq!((grants[2].privileges.len(), grants[2].grantable), (1, true));
        assert_eq!(grants[3].privileges, ["TEMPORARY"]);
        assert!(group_acl(Vec::new()).is_empty());
    }

    #[test]
    fn settings_split_at_the_first_equals_sign() {
        assert_eq!(
            split_setting("search_path=\"$user\", public"),
            Some(("search_path".into(), "\"$user\", public".into()))
        );
        assert_eq!(
            split_setting("app.x=a=b"),
            Some(("app.x".into(), "a=b".into()))
        );
        assert_eq!(
            split_setting("work_mem="),
            Some(("work_mem".into(), "".into()))
        );
        assert_eq!(split_setting("novalue"), None);
        assert_eq!(split_setting("=x"), None);
    }
}
