//! The viewer window's keyboard: the layer search's typing and the commands of
//! [`keymap`] applied to the [`App`] (view keys, input stepping, live pause, blocks, dead
//! filter suggestions).

use std::path::PathBuf;

use winit::keyboard::Key as WinitKey;

use super::App;
use crate::app::keymap::{self, Command, SearchEdit};
use crate::app::worker::Job;
use crate::ui::scene::model_shape;
use crate::ui::state::Key;

impl App {
    /// Typing into the layer search (`/`): characters narrow it and jump to the first match,
    /// Tab jumps to the next match, Enter or Esc keeps the selection and closes it.
    fn on_search_key(&mut self, key: &WinitKey) {
        let (Some(query), Some(edit)) = (self.state.search.as_mut(), keymap::search_edit(key))
        else {
            return;
        };
        let mut start = self.state.selected;
        match edit {
            SearchEdit::Close => {
                self.state.search = None;
                self.redraw();
                return;
            }
            SearchEdit::Next => start = self.state.selected + 1,
            SearchEdit::Backspace => {
                query.pop();
            }
            SearchEdit::Type(text) => query.push_str(&text),
        }
        let query = query.clone();
        let names = self.session.vm.layers.iter().map(|l| l.name.as_str());
        if let Some(i) = crate::ui::state::find_layer(names, &query, start) {
            // A match inside closed blocks opens them.
            self.state.reveal(&self.session.vm.levels, i);
            let shape = model_shape(&self.session.vm, &self.state);
            if self.state.jump_to(&shape, i) {
                self.view_changed();
            } else {
                self.state.scroll_arch_to(shape.item_of(i));
            }
        }
        self.redraw();
    }

    /// A key press outside the search; `true` when it asks to close the viewer.
    pub(super) fn on_key(&mut self, key: &WinitKey) -> bool {
        if self.state.search.is_some() {
            self.on_search_key(key);
            return false;
        }
        let Some(command) = keymap::command(key, self.live.is_some()) else {
            return false;
        };
        let shape = model_shape(&self.session.vm, &self.state);
        match command {
            Command::Quit => return true,
            Command::OpenSearch => self.state.search = Some(String::new()),
            Command::View(k) => {
                if self.state.on_key(&shape, k) {
                    self.view_changed();
                }
            }
            Command::StepInput(step) => {
                if let Some(path) = self
                    .inputs
                    .as_mut()
                    .and_then(|l| l.step(step))
                    .map(PathBuf::from)
                {
                    self.session
                        .vm
                        .notify(format!("computing {}…", path.display()));
                    self.submit(Job::Input(path));
                }
            }
            Command::ToggleLivePause => {
                if let Some(live) = self.live.as_mut() {
                    self.session.vm.set_notice(live.toggle_pause());
                }
            }
            Command::ToggleCollapse => {
                // Collapse or expand the blocks, then bring the selection into view.
                self.state.on_key(&shape, Key::ToggleCollapse);
                let new_shape = model_shape(&self.session.vm, &self.state);
                self.state
                    .scroll_arch_to(new_shape.item_of(self.state.selected));
            }
            Command::CloseBlock => {
                if let Some(block) = self.state.close_block(&self.session.vm.levels) {
                    // Keep the closed block in view.
                    let first = self.session.vm.levels.blocks[block].layers.start;
                    let new_shape = model_shape(&self.session.vm, &self.state);
                    self.state.scroll_arch_to(new_shape.item_of(first));
                }
            }
            Command::AcceptDeadSuggestions => {
                let n = self.session.accept_dead_suggestions(self.state.selected);
                if n > 0 && self.session.vm.notice().is_none() {
                    self.session
                        .vm
                        .notify(format!("marked {n} constant filters bad"));
                }
            }
        }
        self.redraw();
        false
    }
}
