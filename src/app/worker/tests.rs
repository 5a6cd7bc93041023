//! Unit tests of the compute worker's queue rules (newest request wins, Grad-CAM between
//! chunks, stopping and resuming) and of the live feed's single-picture slot.

use super::*;

fn picture(label: &str, value: u8) -> LivePicture {
    tracked(label, value, &Arc::new(()))
}

/// A picture holding a clone of `token`, so the test can count the pictures alive.
fn tracked(label: &str, value: u8, token: &Arc<()>) -> LivePicture {
    let token = Arc::clone(token);
    LivePicture {
        label: label.into(),
        decode: Box::new(move || {
            drop(token);
            Ok(RgbImage::from_pixel(2, 2, image::Rgb([value; 3])))
        }),
    }
}

fn next_label(rx: &Receiver<Job>, feed: &LiveFeed) -> String {
    match next_job(rx, Some(feed), &mut None) {
        Some(Next::Live(p)) => {
            let img = (p.decode)().unwrap();
            format!("{} {}", p.label, img.get_pixel(0, 0)[0])
        }
        Some(Next::Job(Job::Input(path))) => format!("input {}", path.display()),
        Some(Next::Job(_)) => "other job".into(),
        None => "closed".into(),
    }
}

/// tiny_alexnet on flex, a formula input, and its deepest conv layer.
fn tiny_engine() -> (Engine, Arc<InputTensor>, usize) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mixed/tiny_alexnet.onnx");
    let graph = crate::model::load_onnx_file(&path, &Default::default()).unwrap();
    let shape: [usize; 4] = graph.inputs[0].shape.clone().try_into().unwrap();
    let n = shape.iter().product::<usize>();
    let input = Arc::new(InputTensor {
        shape,
        data: (0..n).map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5).collect(),
        picture: None,
    });
    let conv = (graph.nodes.iter().enumerate())
        .rfind(|(_, node)| node.onnx_op == "Conv")
        .map(|(i, _)| i)
        .unwrap();
    let engine = Engine::new(Arc::new(graph), burn::tensor::Device::flex());
    (engine, input, conv)
}

#[test]
fn between_chunks_runs_gradcam_at_once_and_stops_for_other_requests() {
    let (engine, input, layer) = tiny_engine();
    let current = (&input, layer, Method::Guided);
    let (tx, rx) = channel();
    let mut events = Vec::new();
    let mut send = |e| {
        events.push(e);
        true
    };
    let mut waiting = None;
    let gradients = |input: &Arc<InputTensor>, layer, method| Job::Gradients {
        input: Arc::clone(input),
        layer,
        method,
        from_channel: 0,
    };
    // The same layer asked again, and a wake-up from the feed: it goes on.
    tx.send(gradients(&input, layer, Method::Guided)).unwrap();
    tx.send(Job::Wake).unwrap();
    let flow = between_chunks(&engine, &rx, &mut send, &mut waiting, current);
    assert!(flow.is_continue() && waiting.is_none());
    // A Grad-CAM request is computed right away, and it goes on.
    tx.send(Job::Cam {
        input: Arc::clone(&input),
        layer,
        class: 0,
    })
    .unwrap();
    let flow = between_chunks(&engine, &rx, &mut send, &mut waiting, current);
    assert!(flow.is_continue() && waiting.is_none());
    // Another method of the same layer, then a new input: it stops; the newest waits.
    tx.send(gradients(&input, layer, Method::Backprop)).unwrap();
    tx.send(Job::Input("b.png".into())).unwrap();
    let flow = between_chunks(&engine, &rx, &mut send, &mut waiting, current);
    assert!(flow.is_break());
    assert!(matches!(&waiting, Some(Job::Input(p)) if p.as_os_str() == "b.png"));
    assert_eq!(events.len(), 1);
    assert!(matches!(&events[0], UserEvent::Cam(Ok(cam)) if cam.layer == layer));
    // The user went elsewhere and came back: the later request for this layer wins.
    let mut waiting = None;
    tx.send(gradients(&input, layer + 1, Method::Guided))
        .unwrap();
    tx.send(gradients(&input, layer, Method::Guided)).unwrap();
    let flow = between_chunks(&engine, &rx, &mut |_| true, &mut waiting, current);
    assert!(flow.is_continue() && waiting.is_none());
    // During an occlusion sweep (it computes every layer), another layer's occlusion
    // does not stop it; another layer's guided backprop does.
    let sweep = (&input, layer, Method::Occlusion);
    tx.send(gradients(&input, layer + 1, Method::Occlusion))
        .unwrap();
    let flow = between_chunks(&engine, &rx, &mut |_| true, &mut waiting, sweep);
    assert!(flow.is_continue() && waiting.is_none());
    tx.send(gradients(&input, layer + 1, Method::Guided))
        .unwrap();
    let flow = between_chunks(&engine, &rx, &mut |_| true, &mut waiting, sweep);
    assert!(flow.is_break() && waiting.is_some());
    // The same layer for another input (a new Arc) stops it too.
    let mut waiting = None;
    let other_input = Arc::new(InputTensor::clone(&input));
    tx.send(gradients(&other_input, layer, Method::Guided))
        .unwrap();
    let flow = between_chunks(&engine, &rx, &mut |_| true, &mut waiting, current);
    assert!(flow.is_break() && waiting.is_some());
}

fn label(next: Option<Next>) -> String {
    match next {
        Some(Next::Job(Job::Input(path))) => path.display().to_string(),
        Some(Next::Job(Job::Cam { class, .. })) => format!("cam {class}"),
        Some(Next::Job(Job::Gradients { layer, .. })) => format!("layer {layer}"),
        _ => "other".to_string(),
    }
}

#[test]
fn a_waiting_request_runs_next_unless_a_newer_one_came() {
    let (tx, rx) = channel::<Job>();
    // Nothing queued: the waiting request runs without blocking.
    let mut waiting = Some(Job::Input("a".into()));
    assert_eq!(label(next_job(&rx, None, &mut waiting)), "a");
    assert!(waiting.is_none());
    tx.send(Job::Input("b".into())).unwrap();
    tx.send(Job::Wake).unwrap();
    let mut waiting = Some(Job::Input("a".into()));
    assert_eq!(label(next_job(&rx, None, &mut waiting)), "b");
    assert!(waiting.is_none());
}

#[test]
fn grad_cam_requests_go_first_and_keep_the_request_before_them() {
    let input = Arc::new(InputTensor {
        shape: [1, 1, 1, 1],
        data: vec![0.0],
        picture: None,
    });
    let layer = 4;
    let (tx, rx) = channel::<Job>();
    let cam = |class| Job::Cam {
        input: Arc::clone(&input),
        layer,
        class,
    };
    tx.send(Job::Input("old.png".into())).unwrap();
    tx.send(Job::Gradients {
        input: Arc::clone(&input),
        layer,
        method: Method::Guided,
        from_channel: 0,
    })
    .unwrap();
    tx.send(cam(1)).unwrap();
    tx.send(cam(2)).unwrap();
    let mut waiting = None;
    // The newest Grad-CAM runs first, the layer request before it waits; the older input
    // was replaced by that request, as before.
    assert_eq!(label(next_job(&rx, None, &mut waiting)), "cam 2");
    assert_eq!(
        label(next_job(&rx, None, &mut waiting)),
        format!("layer {layer}")
    );
    // A request after the Grad-CAM replaces the one kept behind it.
    tx.send(Job::Input("a.png".into())).unwrap();
    tx.send(cam(3)).unwrap();
    tx.send(Job::Input("b.png".into())).unwrap();
    assert_eq!(label(next_job(&rx, None, &mut waiting)), "b.png");
    assert!(waiting.is_none());
}

#[test]
fn the_feed_keeps_only_the_newest_picture_and_wakes_once() {
    let feed = LiveFeed::new();
    let (tx, rx) = channel();
    feed.attach(tx);
    let token = Arc::new(());
    for value in 1..=3 {
        feed.publish(tracked("cam", value, &token));
    }
    // The two older pictures were dropped, not queued: only the newest holds the token.
    assert_eq!(Arc::strong_count(&token), 2);
    // One wake-up for the empty → full change, none for the replacements.
    assert_eq!(rx.try_iter().count(), 1);
    feed.publish(picture("cam", 4));
    assert_eq!(next_label(&rx, &feed), "cam 4");
    assert!(feed.take().is_none());
}

#[test]
fn window_requests_go_before_live_pictures() {
    let feed = LiveFeed::new();
    let (tx, rx) = channel();
    feed.attach(tx.clone());
    feed.publish(picture("cam", 7));
    tx.send(Job::Input("a.png".into())).unwrap();
    tx.send(Job::Input("b.png".into())).unwrap();
    // The newest request wins over the older one and over the waiting picture …
    assert_eq!(next_label(&rx, &feed), "input b.png");
    // … which is taken next, although its wake-up was consumed with the requests.
    assert_eq!(next_label(&rx, &feed), "cam 7");
}

#[test]
fn a_paused_feed_gives_nothing_until_resumed() {
    let feed = LiveFeed::new();
    let (tx, rx) = channel();
    feed.attach(tx);
    feed.set_paused(true);
    feed.publish(picture("cam", 1));
    feed.publish(picture("cam", 2));
    assert!(!feed.has_picture());
    assert!(feed.take().is_none());
    assert_eq!(rx.try_iter().count(), 0);
    feed.set_paused(false);
    assert_eq!(next_label(&rx, &feed), "cam 2");
}

#[test]
fn a_new_worker_takes_over_the_feed_and_the_old_channel_closes() {
    let feed = LiveFeed::new();
    let (old_tx, old_rx) = channel();
    feed.attach(old_tx);
    feed.publish(picture("cam", 1));
    let (new_tx, new_rx) = channel();
    feed.attach(new_tx);
    // The old worker's channel has no sender left once the feed let go of it.
    let _ = old_rx.try_iter().count();
    assert!(matches!(old_rx.try_recv(), Err(TryRecvError::Disconnected)));
    assert_eq!(next_label(&new_rx, &feed), "cam 1");
    feed.close();
    assert!(matches!(new_rx.try_recv(), Err(TryRecvError::Disconnected)));
    assert_eq!(next_label(&new_rx, &feed), "closed");
}
