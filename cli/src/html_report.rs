//! `dataout report --html <file>`: the self-contained HTML report of a
//! local state dir or a deployed stack (the page `dataout::report` builds,
//! the same one the reconcile function writes to S3).

use std::path::Path;

use anyhow::Context;

use dataout::domain::spec::ActivationSpec;
use dataout::ports::{Clock, JobQueue, SystemClock};
use dataout::report::{self, PageOptions, ReportPage};

use crate::ops::Target;

/// The spec where one is given (`--config`, or the stack's); the page is
/// drawn without objectives and overlap otherwise.
async fn optional_spec(target: &Target) -> anyhow::Result<Option<ActivationSpec>> {
    let given = match target {
        Target::Local { config, .. } => config.is_some(),
        Target::Aws(t) => t.config.is_some(),
    };
    if given {
        Ok(Some(target.spec().await?))
    } else {
        Ok(None)
    }
}

/// Gather and render the page.
pub async fn build(target: &Target, opts: &PageOptions) -> anyhow::Result<(ReportPage, String)> {
    let spec = optional_spec(target).await?;
    let state = target.state()?;
    let mut notes = Vec::new();
    let queue: Option<std::sync::Arc<dyn JobQueue>> = match target.queue(spec.as_ref()) {
        Ok(q) => Some(q),
        Err(e) => {
            notes.push(format!("Queues not read: {e:#}"));
            None
        }
    };
    let mut page = report::gather(
        state.as_ref(),
        queue.as_deref(),
        spec.as_ref(),
        SystemClock.now_ms(),
        opts,
    )
    .await?;
    if !notes.is_empty() {
        page.notes
            .retain(|n| !n.starts_with("Queue depths not read"));
        page.notes.extend(notes);
    }
    let html = report::html::render(&page);
    Ok((page, html))
}

/// Write the page to `out`; prints where it went.
pub async fn write(target: &Target, out: &Path, days: u32) -> anyhow::Result<()> {
    let opts = PageOptions {
        days,
        ..PageOptions::default()
    };
    let (page, html) = build(target, &opts).await?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, html.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    let pairs: usize = page.sections.iter().map(|s| s.pairs.len()).sum();
    println!(
        "{}: {} export × destination pairs, {} report(s) over {} days{}",
        out.display(),
        pairs,
        page.reports_read,
        page.days,
        if page.notes.is_empty() {
            String::new()
        } else {
            format!(" ({} note(s) on the page)", page.notes.len())
        }
    );
    Ok(())
}
