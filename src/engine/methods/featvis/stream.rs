//! Runs a feature visualisation chunk by chunk: each chunk of [`FeatvisSpec::batch`] filters
//! is one optimisation ([`optimise_chunk`]); on the CPU as many chunks run at once as there
//! are cores (a chunk's passes use about one: two chunks on 2 cores took 12 s where one took
//! 10 s), on a GPU one at a time. Steps and finished chunks are reported in chunk order to
//! one callback, which can stop everything between two steps.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use super::{FeatvisError, FeatvisImage, FeatvisSpec, Result, optimise_chunk};
use crate::engine::Engine;

/// What a running feature visualisation reports, for progress bars and to stop it.
#[derive(Debug, Clone, Copy)]
pub enum FeatvisEvent<'a> {
    /// Step `step` of `steps` is done for the chunk of `filters` being optimised (chunks
    /// running at once report their steps interleaved).
    Step {
        filters: &'a [usize],
        step: usize,
        steps: usize,
    },
    /// A chunk of filters is finished; chunks come in `filters`' order.
    Chunk(&'a [FeatvisImage]),
}

/// Optimises an input for each of `filters` (channel indices) of node `layer`; `on_chunk`
/// gets the images as each chunk of [`FeatvisSpec::batch`] filters finishes. `engine` is
/// the batch-1 engine of the model.
pub fn featvis(
    engine: &Engine,
    layer: usize,
    filters: &[usize],
    spec: &FeatvisSpec,
    mut on_chunk: impl FnMut(&[FeatvisImage]),
) -> Result<Vec<FeatvisImage>> {
    let mut out = Vec::with_capacity(filters.len());
    let _: ControlFlow<()> = featvis_stream(engine, layer, filters, spec, &mut |event| {
        if let FeatvisEvent::Chunk(images) = event {
            on_chunk(images);
            out.extend_from_slice(images);
        }
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// [`featvis`] reporting every step and chunk to `on_event`, which returns
/// `ControlFlow::Break` to stop before the next step (the chunks under way are dropped);
/// that is returned.
pub fn featvis_stream(
    engine: &Engine,
    layer: usize,
    filters: &[usize],
    spec: &FeatvisSpec,
    on_event: &mut dyn FnMut(FeatvisEvent<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>> {
    check(engine, layer, filters)?;
    let chunks: Vec<&[usize]> = filters.chunks(spec.batch.max(1)).collect();
    let at_once = if engine.host_kernels() {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    };
    if at_once.min(chunks.len()) <= 1 {
        for chunk in chunks {
            let batched = engine.with_batch(chunk.len())?;
            let mut on_step = |step| {
                on_event(FeatvisEvent::Step {
                    filters: chunk,
                    step,
                    steps: spec.steps,
                })
            };
            let Some(images) = optimise_chunk(&batched, layer, chunk, spec, &mut on_step)? else {
                return Ok(ControlFlow::Break(()));
            };
            if on_event(FeatvisEvent::Chunk(&images)).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        return Ok(ControlFlow::Continue(()));
    }
    concurrent(engine, (layer, spec), &chunks, at_once, on_event)
}

/// The layer has per-channel maps, `filters` are among them, and the model takes one
/// RGB image.
fn check(engine: &Engine, layer: usize, filters: &[usize]) -> Result<()> {
    let graph = engine.graph();
    let node = &graph.nodes[layer];
    let (channels, _, _) = node
        .feature_map_dims()
        .ok_or_else(|| FeatvisError::NotFeatureMap {
            layer: node.name.clone(),
            shape: node.output_shape().to_vec(),
        })?;
    if let Some(&filter) = filters.iter().find(|&&f| f >= channels) {
        return Err(FeatvisError::Filter {
            layer: node.name.clone(),
            filter,
            channels,
        });
    }
    let input_shape = graph
        .image_input()
        .map(|i| i.shape.clone())
        .unwrap_or_default();
    if !matches!(input_shape.as_slice(), &[1, 3, _, _]) {
        return Err(FeatvisError::Input(input_shape));
    }
    Ok(())
}

/// What a chunk's thread tells the caller's thread.
enum Message {
    Step {
        chunk: usize,
        step: usize,
    },
    Done {
        chunk: usize,
        images: Result<Option<Vec<FeatvisImage>>>,
    },
}

/// `chunks` optimised by `threads` scoped threads, each taking the next chunk when done;
/// `on_event` runs on the calling thread, which delivers finished chunks in order.
fn concurrent(
    engine: &Engine,
    (layer, spec): (usize, &FeatvisSpec),
    chunks: &[&[usize]],
    threads: usize,
    on_event: &mut dyn FnMut(FeatvisEvent<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>> {
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<Message>();
    std::thread::scope(|scope| {
        for _ in 0..threads.min(chunks.len()) {
            let (tx, stop, next) = (tx.clone(), &stop, &next);
            scope.spawn(move || {
                loop {
                    let chunk = next.fetch_add(1, Ordering::Relaxed);
                    if chunk >= chunks.len() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut on_step = |step| {
                        let _ = tx.send(Message::Step { chunk, step });
                        if stop.load(Ordering::Relaxed) {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    };
                    let images = engine
                        .with_batch(chunks[chunk].len())
                        .map_err(FeatvisError::from)
                        .and_then(|batched| {
                            optimise_chunk(&batched, layer, chunks[chunk], spec, &mut on_step)
                        });
                    let failed = images.is_err();
                    let _ = tx.send(Message::Done { chunk, images });
                    if failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Finished chunks wait here until the ones before them are delivered.
        let mut finished: BTreeMap<usize, Vec<FeatvisImage>> = BTreeMap::new();
        let (mut delivered, mut flow, mut error) = (0, ControlFlow::Continue(()), None);
        for message in rx {
            if flow.is_break() || error.is_some() {
                continue; // drain until every thread has stopped
            }
            let reply = match message {
                Message::Step { chunk, step } => on_event(FeatvisEvent::Step {
                    filters: chunks[chunk],
                    step,
                    steps: spec.steps,
                }),
                Message::Done { images: Err(e), .. } => {
                    error = Some(e);
                    ControlFlow::Break(())
                }
                Message::Done {
                    images: Ok(None), ..
                } => ControlFlow::Continue(()),
                Message::Done {
                    chunk,
                    images: Ok(Some(images)),
                } => {
                    finished.insert(chunk, images);
                    let mut reply = ControlFlow::Continue(());
                    while reply.is_continue()
                        && let Some(images) = finished.remove(&delivered)
                    {
                        delivered += 1;
                        reply = on_event(FeatvisEvent::Chunk(&images));
                    }
                    reply
                }
            };
            if reply.is_break() {
                flow = ControlFlow::Break(());
                stop.store(true, Ordering::Relaxed);
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(flow),
        }
    })
}
