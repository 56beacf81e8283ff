//! The comparison as SVG charts (plotters, SVG backend only): one panel per headline
//! figure, a bar per dataplane at the median with a whisker from min to max, each panel on
//! its own scale and titled with its unit and which direction is better; and the latency
//! distributions, one panel per latency workload and background load, a line per dataplane
//! giving the share of samples at least as slow as each latency (log-log, so the tail shows).
//!
//! Invariant: a dataplane without a value for a figure gets no bar there (never a zero bar)
//! and no line where it has no samples; a dataplane keeps its colour in every panel.

use plotters::prelude::*;
use testbed::error::Error;

use super::Result;
use super::hogs::Load;
use super::metrics::{LatencyKind, MetricDef, samples_key};
use super::report::{Comparison, number};

/// A dataplane's distribution line: its index (colour), short name and points.
type Line = (usize, String, Vec<(f64, f64)>);

/// Points per distribution line.
const CCDF_POINTS: usize = 200;

/// The `index`th dataplane's colour (Tableau 10).
fn color(index: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0xe3, 0x77, 0xc2),
        RGBColor(0x7f, 0x7f, 0x7f),
        RGBColor(0xbc, 0xbd, 0x22),
        RGBColor(0x17, 0xbe, 0xcf),
    ];
    PALETTE[index % PALETTE.len()]
}

/// The headline figures (the rows marked for the chart).
fn panels(comparison: &Comparison) -> Vec<&MetricDef> {
    comparison.metrics.iter().filter(|m| m.chart).collect()
}

fn plotting<E: std::fmt::Debug>(e: E) -> Error {
    Error(format!("drawing the chart: {e:?}"))
}

/// The chart as SVG text.
pub fn svg(comparison: &Comparison) -> Result<String> {
    let metrics = panels(comparison);
    let columns = 3;
    let rows = metrics.len().div_ceil(columns).max(1);
    let size = (1260, 60 + 300 * u32::try_from(rows).unwrap_or(1));
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(plotting)?;
        let root = root
            .titled(
                "ferroplane vs kernel (kube-proxy iptables / nftables) vs OVS userspace: median, whiskers min-max",
                ("sans-serif", 18),
            )
            .map_err(plotting)?;
        for (area, metric) in root.split_evenly((rows, columns)).iter().zip(&metrics) {
            panel(area, comparison, metric)?;
        }
        root.present().map_err(plotting)?;
    }
    Ok(text)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    comparison: &Comparison,
    metric: &MetricDef,
) -> Result<()> {
    let bars: Vec<(usize, super::Dataplane, Option<super::stats::Summary>)> = comparison
        .results
        .iter()
        .enumerate()
        .map(|(i, r)| (i, r.dataplane, r.summary(&metric.key)))
        .collect();
    let top = bars
        .iter()
        .filter_map(|(_, _, s)| s.map(|s| s.max))
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let count = bars.len().max(1) as f64;
    let better = if metric.higher_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{} ({}, {better})", metric.label, metric.unit),
            ("sans-serif", 12),
        )
        .margin(10)
        .x_label_area_size(22)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..count - 0.5, 0f64..top)
        .map_err(plotting)?;
    let names: Vec<String> = bars.iter().map(|(_, d, _)| d.short()).collect();
    let decimals = metric.decimals;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(0)
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|x| {
            let index = x.round();
            if (x - index).abs() < 0.01 && index >= 0.0 {
                names.get(index as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| number(*y, if decimals > 0 && top < 10.0 { 1 } else { 0 }))
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(plotting)?;
    for (index, _, summary) in &bars {
        let Some(s) = summary else { continue };
        let x = *index as f64;
        let color = color(*index);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - 0.35, 0.0), (x + 0.35, s.median)],
                color.filled(),
            )))
            .map_err(plotting)?;
        chart
            .draw_series([
                PathElement::new(vec![(x, s.min), (x, s.max)], BLACK.stroke_width(1)),
                PathElement::new(
                    vec![(x - 0.1, s.min), (x + 0.1, s.min)],
                    BLACK.stroke_width(1),
                ),
                PathElement::new(
                    vec![(x - 0.1, s.max), (x + 0.1, s.max)],
                    BLACK.stroke_width(1),
                ),
            ])
            .map_err(plotting)?;
    }
    Ok(())
}

/// The latency distributions as SVG text: a panel per latency workload and load.
pub fn latency_svg(comparison: &Comparison) -> Result<String> {
    let panels: Vec<(LatencyKind, Load)> = LatencyKind::ALL
        .iter()
        .flat_map(|&kind| Load::ALL.map(|load| (kind, load)))
        .collect();
    let columns = Load::ALL.len();
    let rows = panels.len().div_ceil(columns);
    let size = (1260, 60 + 380 * u32::try_from(rows).unwrap_or(1));
    // One x range for every panel, so the loads compare at a glance.
    let (low, high) = comparison
        .results
        .iter()
        .flat_map(|r| r.samples.values())
        .flatten()
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let low = if low.is_finite() && low > 0.0 {
        low * 0.8
    } else {
        1.0
    };
    let high = (high * 1.25).max(low * 10.0);
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(plotting)?;
        let root = root
            .titled(
                "Latency distributions: share of samples at least as slow as x (log-log; lower and further left is better)",
                ("sans-serif", 18),
            )
            .map_err(plotting)?;
        for (area, &(kind, load)) in root.split_evenly((rows, columns)).iter().zip(&panels) {
            ccdf_panel(area, comparison, kind, load, (low, high))?;
        }
        root.present().map_err(plotting)?;
    }
    Ok(text)
}

fn ccdf_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    comparison: &Comparison,
    kind: LatencyKind,
    load: Load,
    (low, high): (f64, f64),
) -> Result<()> {
    let key = samples_key(kind, load);
    let lines: Vec<Line> = comparison
        .results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                i,
                r.dataplane.short(),
                r.distribution(&key).ccdf(CCDF_POINTS),
            )
        })
        .filter(|(_, _, points)| !points.is_empty())
        .collect();
    let floor = lines
        .iter()
        .filter_map(|(_, _, points)| points.last().map(|p| p.1))
        .fold(1.0f64, f64::min)
        * 0.5;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{}, {} (µs)", kind.label(), load.label()),
            ("sans-serif", 12),
        )
        .margin(10)
        .x_label_area_size(24)
        .y_label_area_size(50)
        .build_cartesian_2d((low..high).log_scale(), (floor..1.0f64).log_scale())
        .map_err(plotting)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| number(*x, 0))
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .label_style(("sans-serif", 10))
        .draw()
        .map_err(plotting)?;
    for (index, name, points) in lines {
        let color = color(index);
        chart
            .draw_series(std::iter::once(PathElement::new(
                points,
                color.stroke_width(2),
            )))
            .map_err(plotting)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 10))
        .draw()
        .map_err(plotting)?;
    Ok(())
}
