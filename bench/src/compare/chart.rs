//! The comparison as an SVG chart (plotters, SVG backend only): one panel per headline
//! figure, a bar per dataplane at the median with a whisker from min to max, each panel on
//! its own scale and titled with its unit and which direction is better.
//!
//! Invariant: a dataplane without a value for a figure gets no bar there (never a zero bar).

use plotters::prelude::*;
use testbed::error::Error;
use testbed::run_state::Io;

use super::metrics::MetricDef;
use super::report::{Comparison, number, short};
use super::{Dataplane, Result};

/// One colour per dataplane: ferroplane in blues, the kernel in red and orange, OVS green.
fn color(dataplane: Dataplane) -> RGBColor {
    match dataplane {
        Dataplane::Ferroplane(Io::AfPacket) => RGBColor(0x1f, 0x77, 0xb4),
        Dataplane::Ferroplane(Io::Tap) => RGBColor(0x6b, 0xae, 0xd6),
        Dataplane::Ferroplane(Io::AfXdp) => RGBColor(0x08, 0x30, 0x6b),
        Dataplane::Iptables => RGBColor(0xd6, 0x27, 0x28),
        Dataplane::Nftables => RGBColor(0xff, 0x7f, 0x0e),
        Dataplane::Ovs => RGBColor(0x2c, 0xa0, 0x2c),
    }
}

/// The headline figures: every row but the CPU split and the p99 connect times.
fn panels(comparison: &Comparison) -> Vec<&MetricDef> {
    comparison
        .metrics
        .iter()
        .filter(|m| !m.label.starts_with("  ") && !(m.key.starts_with("connect_p99")))
        .collect()
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
    let bars: Vec<(usize, Dataplane, Option<super::stats::Summary>)> = comparison
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
    let names: Vec<&str> = bars.iter().map(|(_, d, _)| short(*d)).collect();
    let decimals = metric.decimals;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(0)
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|x| {
            let index = x.round();
            if (x - index).abs() < 0.01 && index >= 0.0 {
                names
                    .get(index as usize)
                    .copied()
                    .unwrap_or_default()
                    .to_owned()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| number(*y, if decimals > 0 && top < 10.0 { 1 } else { 0 }))
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(plotting)?;
    for (index, dataplane, summary) in &bars {
        let Some(s) = summary else { continue };
        let x = *index as f64;
        let color = color(*dataplane);
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
