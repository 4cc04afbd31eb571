//! `--report FILE`: a picture of a run (latency distribution and calls/s over
//! time) as a self-contained SVG.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::Summary;

/// Draws the report. Two panels: how many calls took how long (up to the
/// 99.9th percentile, so one outlier does not squash the chart), and
/// answered and failed calls per second through the run (an outage shows as
/// a dip to zero and a spike of failures).
pub(super) fn write_svg(
    path: &Path,
    summary: &Summary,
    latencies: &Histogram<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (960, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(390);

    let upper_us = if latencies.is_empty() {
        1_000
    } else {
        latencies.value_at_quantile(0.999).max(10)
    };
    const BINS: u64 = 60;
    let bin_us = upper_us.div_ceil(BINS).max(1);
    let mut counts = vec![0u64; usize::try_from(BINS).unwrap_or(60)];
    for value in latencies.iter_recorded() {
        let bin = (value.value_iterated_to() / bin_us).min(BINS - 1);
        counts[usize::try_from(bin).unwrap_or(0)] += value.count_at_value();
    }
    let tallest = counts.iter().copied().max().unwrap_or(1).max(1);
    let bin_ms = bin_us as f64 / 1000.0;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "Latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms ({} calls, {} in flight)",
                summary.p50_ms, summary.p99_ms, summary.p999_ms, summary.calls, summary.inflight
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0.0..(bin_ms * BINS as f64),
            0u64..(tallest + tallest / 10 + 1),
        )?;
    chart
        .configure_mesh()
        .x_desc("latency (ms)")
        .y_desc("calls")
        .draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, &count)| {
        let x0 = i as f64 * bin_ms;
        Rectangle::new([(x0, 0), (x0 + bin_ms, count)], BLUE.mix(0.6).filled())
    }))?;

    let points: Vec<(f64, f64)> = summary.timeline.iter().map(|s| (s.t_s, s.rps)).collect();
    let failures: Vec<(f64, f64)> = summary
        .timeline
        .iter()
        .map(|s| (s.t_s, s.errors as f64))
        .collect();
    let end = points
        .last()
        .map_or(summary.duration_s, |&(t, _)| t.max(summary.duration_s))
        .max(1.0);
    let peak = points
        .iter()
        .chain(failures.iter())
        .map(|&(_, rps)| rps)
        .fold(summary.rps, f64::max)
        .max(1.0);
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            format!("Throughput: {:.0} calls/s on average", summary.rps),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..peak * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("calls/s")
        .draw()?;
    chart
        .draw_series(LineSeries::new(points.iter().copied(), &BLUE))?
        .label("answered calls/s")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
    chart.draw_series(
        points
            .iter()
            .map(|&point| Circle::new(point, 3, BLUE.filled())),
    )?;
    if summary.errors > 0 {
        chart
            .draw_series(LineSeries::new(failures.iter().copied(), &RED))?
            .label("failed calls/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
