//! The nine connector types of the DataHub API and their type strings.

/// A connector type (`ConnectorType` in pydatahub).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectorKind {
    Odps,
    Ads,
    Es,
    Fc,
    Mysql,
    Oss,
    Ots,
    Hologres,
    Datahub,
}

impl ConnectorKind {
    pub const ALL: [ConnectorKind; 9] = [
        ConnectorKind::Odps,
        ConnectorKind::Ads,
        ConnectorKind::Es,
        ConnectorKind::Fc,
        ConnectorKind::Mysql,
        ConnectorKind::Oss,
        ConnectorKind::Ots,
        ConnectorKind::Hologres,
        ConnectorKind::Datahub,
    ];

    /// Parses a type string (`sink_odps`, case-insensitive; `SINK_ODPS` too).
    pub fn parse(s: &str) -> Option<ConnectorKind> {
        let lower = s.trim().to_ascii_lowercase();
        ConnectorKind::ALL.into_iter().find(|k| k.as_str() == lower)
    }

    /// The wire type string.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Odps => "sink_odps",
            ConnectorKind::Ads => "sink_ads",
            ConnectorKind::Es => "sink_es",
            ConnectorKind::Fc => "sink_fc",
            ConnectorKind::Mysql => "sink_mysql",
            ConnectorKind::Oss => "sink_oss",
            ConnectorKind::Ots => "sink_ots",
            ConnectorKind::Hologres => "sink_hologres",
            ConnectorKind::Datahub => "sink_datahub",
        }
    }

    /// The enum name users see in messages, e.g. `SINK_ODPS`.
    pub fn display_name(self) -> String {
        self.as_str().to_ascii_uppercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_strings_round_trip() {
        for k in ConnectorKind::ALL {
            assert_eq!(ConnectorKind::parse(k.as_str()), Some(k));
            assert_eq!(ConnectorKind::parse(&k.display_name()), Some(k));
        }
        assert_eq!(ConnectorKind::parse("sink_kafka"), None);
    }
}
