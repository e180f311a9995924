//! Id rules: how events without an id get one, per detail-type.

use herald_core::IdRule;
use rusqlite::{Connection, Transaction, params};

pub fn put(tx: &Transaction<'_>, rule: &IdRule) -> rusqlite::Result<()> {
    let fields = serde_json::to_string(&rule.fields).expect("strings serialize");
    tx.prepare_cached(
        "INSERT INTO id_rules (detail_type, fields) VALUES (?1, ?2)
         ON CONFLICT (detail_type) DO UPDATE SET fields = excluded.fields",
    )?
    .execute(params![rule.detail_type, fields])?;
    Ok(())
}

pub fn delete(tx: &Transaction<'_>, detail_type: &str) -> rusqlite::Result<bool> {
    Ok(tx.prepare_cached("DELETE FROM id_rules WHERE detail_type = ?1")?.execute([detail_type])? > 0)
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<IdRule>> {
    let mut stmt = conn.prepare_cached("SELECT detail_type, fields FROM id_rules ORDER BY detail_type")?;
    let rows = stmt.query_map([], |r| {
        let fields: String = r.get(1)?;
        let fields = serde_json::from_str(&fields)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?;
        Ok(IdRule { detail_type: r.get(0)?, fields })
    })?;
    rows.collect()
}
