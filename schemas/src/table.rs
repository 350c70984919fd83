//! The Iceberg table contract: schema (as Iceberg schema JSON), partitioning and the
//! snapshot / table properties that carry Kafka offsets.

/// The table schema in Iceberg's JSON form, field ids fixed.
pub const TABLE_SCHEMA_V1_JSON: &str = include_str!("../webhook_table.v1.json");

/// Column names, in schema order.
pub mod columns {
    pub const MESSAGE_ID: &str = "message_id";
    pub const PAYLOAD: &str = "payload";
    pub const WEBHOOK_RECEIVED_AT: &str = "webhook_received_at";
    pub const SOURCE: &str = "source";
    pub const EVENT_TYPE: &str = "event_type";
    pub const HEADERS: &str = "headers";
    pub const KAFKA_PARTITION: &str = "kafka_partition";
    pub const KAFKA_OFFSET: &str = "kafka_offset";
    pub const LOADED_AT: &str = "loaded_at";
}

/// The table is partitioned by `day(webhook_received_at)`; this is the partition field's name.
pub const PARTITION_FIELD: &str = "webhook_received_at_day";

/// Snapshot summary key: `{"<topic>": {"<partition>": next_offset}}` of the partitions the commit covers.
pub const SUMMARY_OFFSETS: &str = "hooklake.offsets";
/// Snapshot summary key: the id of the sink run that made the snapshot.
pub const SUMMARY_RUN_ID: &str = "hooklake.run-id";

/// Table property holding a partition's next offset: `hooklake.offset.<topic>.<partition>`.
pub fn offset_property(topic: &str, partition: i32) -> String {
    format!("{OFFSET_PROPERTY_PREFIX}{topic}.{partition}")
}

/// Prefix of [`offset_property`] keys.
pub const OFFSET_PROPERTY_PREFIX: &str = "hooklake.offset.";

/// Parses an [`offset_property`] key back into `(topic, partition)`.
pub fn parse_offset_property(key: &str) -> Option<(&str, i32)> {
    let rest = key.strip_prefix(OFFSET_PROPERTY_PREFIX)?;
    let (topic, partition) = rest.rsplit_once('.')?;
    Some((topic, partition.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_properties_round_trip_with_dotted_topics() {
        let key = offset_property("hooklake.orders", 2);
        assert_eq!(key, "hooklake.offset.hooklake.orders.2");
        assert_eq!(parse_offset_property(&key), Some(("hooklake.orders", 2)));
        assert_eq!(parse_offset_property("hooklake.offset.x"), None);
        assert_eq!(parse_offset_property("other"), None);
    }

    #[test]
    fn schema_json_lists_the_contract_columns_in_order() {
        let v: serde_json::Value = serde_json::from_str(TABLE_SCHEMA_V1_JSON).unwrap();
        let names: Vec<&str> = v["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        use columns::*;
        assert_eq!(
            names,
            [
                MESSAGE_ID,
                PAYLOAD,
                WEBHOOK_RECEIVED_AT,
                SOURCE,
                EVENT_TYPE,
                HEADERS,
                KAFKA_PARTITION,
                KAFKA_OFFSET,
                LOADED_AT
            ]
        );
    }
}
