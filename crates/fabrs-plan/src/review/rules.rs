//! Security group rules as people write them: `tcp/443 from lb`,
//! `tcp/22 from 203.0.113.10/32`, `tcp/8000-8010 from web`.

use serde_json::Value;

/// One rule (as the plan's JSON holds it) on one line; `None` when the value
/// is not a rule.
pub fn rule_line(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    let protocol = o.get("protocol")?.as_str()?;
    let from = o.get("from_port")?.as_u64()?;
    let to = o.get("to_port")?.as_u64()?;
    let source = o.get("source")?;
    let src = source
        .get("cidr")
        .or_else(|| source.get("group"))
        .and_then(Value::as_str)?;
    let ports = if from == to {
        from.to_string()
    } else {
        format!("{from}-{to}")
    };
    Some(format!("{protocol}/{ports} from {src}"))
}

/// Rules as lines, when every element of a list is a rule.
pub fn rule_lines(list: &[Value]) -> Option<Vec<String>> {
    list.iter().map(rule_line).collect()
}

/// (removed, added, unchanged) rule lines of an ingress diff.
pub fn rule_changes(before: Option<&Value>, after: Option<&Value>) -> Option<(Vec<String>, Vec<String>, usize)> {
    let empty = Vec::new();
    let b = match before {
        Some(Value::Array(b)) => rule_lines(b)?,
        None | Some(Value::Null) => rule_lines(&empty)?,
        _ => return None,
    };
    let a = match after {
        Some(Value::Array(a)) => rule_lines(a)?,
        None | Some(Value::Null) => rule_lines(&empty)?,
        _ => return None,
    };
    let removed: Vec<String> = b.iter().filter(|r| !a.contains(r)).cloned().collect();
    let added: Vec<String> = a.iter().filter(|r| !b.contains(r)).cloned().collect();
    let unchanged = a.iter().filter(|r| b.contains(r)).count();
    Some((removed, added, unchanged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_line_per_rule() {
        let g = json!({"protocol": "tcp", "from_port": 443, "to_port": 443, "source": {"group": "lb"}});
        let c = json!({"protocol": "tcp", "from_port": 22, "to_port": 22, "source": {"cidr": "203.0.113.10/32"}});
        let r = json!({"protocol": "udp", "from_port": 8000, "to_port": 8010, "source": {"cidr": "10.0.0.0/8"}});
        assert_eq!(rule_line(&g).unwrap(), "tcp/443 from lb");
        assert_eq!(rule_line(&c).unwrap(), "tcp/22 from 203.0.113.10/32");
        assert_eq!(rule_line(&r).unwrap(), "udp/8000-8010 from 10.0.0.0/8");
        let (removed, added, same) = rule_changes(Some(&json!([g, c])), Some(&json!([g, r]))).unwrap();
        assert_eq!(removed, ["tcp/22 from 203.0.113.10/32"]);
        assert_eq!(added, ["udp/8000-8010 from 10.0.0.0/8"]);
        assert_eq!(same, 1);
    }
}
