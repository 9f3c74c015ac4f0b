use super::*;

#[test]
fn every_metric_has_help_and_type_and_samples_follow_them() {
    let m = Metrics::default();
    m.records_refused.add("agent_without_owner", 3);
    m.requests_throttled.add("overloaded", 1);
    Metrics::set(&m.queue_depth, 2);
    let text = m.render();
    assert!(text.contains("# TYPE audit_collector_records_refused_total counter\n"));
    assert!(text
        .contains("\naudit_collector_records_refused_total{reason=\"agent_without_owner\"} 3\n"));
    assert!(text.contains("\naudit_collector_requests_throttled_total{reason=\"overloaded\"} 1\n"));
    assert!(
        text.contains("# TYPE audit_collector_queue_depth gauge\naudit_collector_queue_depth 2\n")
    );
    // Each HELP is followed by its TYPE, and a sample's name starts with the family's.
    let lines: Vec<&str> = text.lines().collect();
    let mut family = "";
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            family = rest.split(' ').next().unwrap_or("");
            assert!(
                lines[i + 1].starts_with(&format!("# TYPE {family} ")),
                "{line}"
            );
        } else if !line.starts_with('#') {
            assert!(
                line.starts_with(family),
                "sample {line:?} outside its family {family}"
            );
        }
    }
}

#[test]
fn histogram_buckets_are_cumulative_and_end_with_the_count() {
    let h = Histogram::default();
    h.observe(Duration::from_micros(50)); // first bucket
    h.observe(Duration::from_millis(3)); // le 0.005
    h.observe(Duration::from_secs(5)); // only +Inf
    let mut out = String::new();
    h.render(&mut out, "x_seconds", "test");
    assert!(out.contains("x_seconds_bucket{le=\"0.0001\"} 1\n"), "{out}");
    assert!(out.contains("x_seconds_bucket{le=\"0.0025\"} 1\n"), "{out}");
    assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{out}");
    assert!(out.contains("x_seconds_bucket{le=\"1\"} 2\n"), "{out}");
    assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
    assert!(out.contains("x_seconds_count 3\n"), "{out}");
    let sum: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("audit_collector_x_seconds_sum "))
        .and_then(|v| v.parse().ok())
        .expect("sum");
    assert!((sum - 5.00305).abs() < 1e-9, "{sum}");
}

#[test]
fn gauges_do_not_wrap_below_zero() {
    let m = Metrics::default();
    Metrics::sub(&m.queue_depth, 1);
    assert_eq!(m.queue_depth.load(Ordering::Relaxed), 0);
}
