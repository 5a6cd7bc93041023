//! The viewer's keyboard bindings: a pressed winit key → what the window should do, as plain
//! data (pure functions, unit-tested without a window). The window ([`super::window`]) carries
//! the commands out; view-state keys go on to [`crate::ui::state::ViewState::on_key`].

use winit::keyboard::{Key as WinitKey, NamedKey};

use crate::ui::state::Key;

/// What a key press asks of the window while the layer search is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A change of the view state alone.
    View(Key),
    /// The next (+1) or previous (−1) file of the input folder.
    StepInput(isize),
    /// Stop or resume taking webcam frames (Space, only with a live input).
    ToggleLivePause,
    /// Blocks ↔ layers in the architecture, then scroll the selection into view.
    ToggleCollapse,
    /// Close the innermost open block around the hovered node or the selection (U).
    CloseBlock,
    /// Mark the selected layer's constant filters bad (B).
    AcceptDeadSuggestions,
    /// Open the layer search (`/`).
    OpenSearch,
    /// Close the viewer (Esc).
    Quit,
}

/// The command bound to `key` (`live`: a webcam input is running); `None` for unbound keys.
/// Letters match either case.
pub fn command(key: &WinitKey, live: bool) -> Option<Command> {
    let view = |k| Some(Command::View(k));
    match key {
        WinitKey::Named(NamedKey::Escape) => Some(Command::Quit),
        WinitKey::Named(NamedKey::ArrowDown) => view(Key::NextLayer),
        WinitKey::Named(NamedKey::ArrowUp) => view(Key::PrevLayer),
        WinitKey::Named(NamedKey::ArrowRight) => Some(Command::StepInput(1)),
        WinitKey::Named(NamedKey::ArrowLeft) => Some(Command::StepInput(-1)),
        WinitKey::Named(NamedKey::Space) if live => Some(Command::ToggleLivePause),
        WinitKey::Character(c) => match c.to_ascii_lowercase().as_str() {
            "/" => Some(Command::OpenSearch),
            "c" => view(Key::CycleColormap),
            "f" => view(Key::ToggleFrameTime),
            "m" => view(Key::CycleMethod),
            "+" | "=" => view(Key::ZoomIn),
            "-" => view(Key::ZoomOut),
            "0" => view(Key::ZoomReset),
            "]" => view(Key::ArchZoomIn),
            "[" => view(Key::ArchZoomOut),
            "s" => view(Key::ToggleRankSort),
            "n" => view(Key::ToggleGradientNorm),
            "g" => Some(Command::ToggleCollapse),
            "u" => Some(Command::CloseBlock),
            "b" => Some(Command::AcceptDeadSuggestions),
            _ => None,
        },
        _ => None,
    }
}

/// What a key press does while the layer search (`/`) is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchEdit {
    /// Append text to the query, then jump to the first match from the selection.
    Type(String),
    /// Remove the query's last character, then jump as for [`SearchEdit::Type`].
    Backspace,
    /// Jump to the next match after the selection (Tab).
    Next,
    /// Close the search and keep the selection (Enter or Esc).
    Close,
}

/// The search edit bound to `key`; `None` for keys the search ignores.
pub fn search_edit(key: &WinitKey) -> Option<SearchEdit> {
    match key {
        WinitKey::Named(NamedKey::Escape | NamedKey::Enter) => Some(SearchEdit::Close),
        WinitKey::Named(NamedKey::Tab) => Some(SearchEdit::Next),
        WinitKey::Named(NamedKey::Backspace) => Some(SearchEdit::Backspace),
        WinitKey::Named(NamedKey::Space) => Some(SearchEdit::Type(" ".into())),
        WinitKey::Character(c) => Some(SearchEdit::Type(c.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> WinitKey {
        WinitKey::Character(s.into())
    }

    #[test]
    fn letters_bind_in_either_case() {
        for (lower, upper, want) in [
            ("m", "M", Command::View(Key::CycleMethod)),
            ("c", "C", Command::View(Key::CycleColormap)),
            ("f", "F", Command::View(Key::ToggleFrameTime)),
            ("s", "S", Command::View(Key::ToggleRankSort)),
            ("n", "N", Command::View(Key::ToggleGradientNorm)),
            ("g", "G", Command::ToggleCollapse),
            ("u", "U", Command::CloseBlock),
            ("b", "B", Command::AcceptDeadSuggestions),
        ] {
            assert_eq!(command(&ch(lower), false), Some(want), "{lower}");
            assert_eq!(command(&ch(upper), false), Some(want), "{upper}");
        }
    }

    #[test]
    fn zoom_arrows_and_escape() {
        assert_eq!(command(&ch("+"), false), Some(Command::View(Key::ZoomIn)));
        assert_eq!(command(&ch("="), false), Some(Command::View(Key::ZoomIn)));
        assert_eq!(command(&ch("-"), false), Some(Command::View(Key::ZoomOut)));
        assert_eq!(
            command(&ch("0"), false),
            Some(Command::View(Key::ZoomReset))
        );
        assert_eq!(
            command(&ch("]"), false),
            Some(Command::View(Key::ArchZoomIn))
        );
        assert_eq!(
            command(&ch("["), false),
            Some(Command::View(Key::ArchZoomOut))
        );
        let named = |k| command(&WinitKey::Named(k), false);
        assert_eq!(
            named(NamedKey::ArrowDown),
            Some(Command::View(Key::NextLayer))
        );
        assert_eq!(
            named(NamedKey::ArrowUp),
            Some(Command::View(Key::PrevLayer))
        );
        assert_eq!(named(NamedKey::ArrowRight), Some(Command::StepInput(1)));
        assert_eq!(named(NamedKey::ArrowLeft), Some(Command::StepInput(-1)));
        assert_eq!(named(NamedKey::Escape), Some(Command::Quit));
        assert_eq!(command(&ch("/"), false), Some(Command::OpenSearch));
        assert_eq!(command(&ch("x"), false), None);
        assert_eq!(named(NamedKey::F1), None);
    }

    #[test]
    fn space_pauses_only_a_live_input() {
        let space = WinitKey::Named(NamedKey::Space);
        assert_eq!(command(&space, true), Some(Command::ToggleLivePause));
        assert_eq!(command(&space, false), None);
    }

    #[test]
    fn the_search_takes_text_and_closes_on_enter_or_escape() {
        assert_eq!(search_edit(&ch("M")), Some(SearchEdit::Type("M".into())));
        assert_eq!(search_edit(&ch("/")), Some(SearchEdit::Type("/".into())));
        let named = |k| search_edit(&WinitKey::Named(k));
        assert_eq!(named(NamedKey::Space), Some(SearchEdit::Type(" ".into())));
        assert_eq!(named(NamedKey::Backspace), Some(SearchEdit::Backspace));
        assert_eq!(named(NamedKey::Tab), Some(SearchEdit::Next));
        assert_eq!(named(NamedKey::Enter), Some(SearchEdit::Close));
        assert_eq!(named(NamedKey::Escape), Some(SearchEdit::Close));
        assert_eq!(named(NamedKey::ArrowDown), None);
    }
}
