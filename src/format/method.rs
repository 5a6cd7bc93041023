//! The one method vocabulary: what a per-filter view shows. The command line parses it once
//! ([`Method::parse`]), the engine gets its reverse-pass rule ([`Method::gradient`]), export
//! and the data-directory reader name its folder ([`Method::dir_name`]), and the viewer its
//! buttons (labels live in `ui`).

use crate::engine::reverse::step::GradientRule;

/// The per-filter visualisation methods: one image per filter of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// The layer's own activation map.
    Forward,
    /// Guided backpropagation (Springenberg et al.): [`GradientRule::Guided`].
    Guided,
    /// Zeiler & Fergus's deconvnet: [`GradientRule::Deconvnet`].
    Deconvnet,
    /// The plain gradient (Simonyan et al.): [`GradientRule::Backprop`].
    Backprop,
    /// Drop of each filter's summed response as a grey square slides over the input (one
    /// map per filter at the occlusion grid's size).
    Occlusion,
    /// Feature visualisation (Olah et al.): per filter, the image optimised to excite it
    /// most ([`crate::engine::methods::featvis`]); it does not depend on the input.
    FeatVis,
}

/// A method name that is not one of [`Method::ALL`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown method '{0}' (expected forward, gbp, deconvnet, backprop, occlusion, featvis; export also takes gradcam)"
)]
pub struct UnknownMethod(pub String);

impl Method {
    /// In the viewer's button order.
    pub const ALL: [Method; 6] = [
        Method::Forward,
        Method::Guided,
        Method::Deconvnet,
        Method::Backprop,
        Method::Occlusion,
        Method::FeatVis,
    ];

    /// The name on the command line and of the data directory's folder (`gbp/` for guided
    /// backpropagation, as in the paper's files).
    pub fn dir_name(self) -> &'static str {
        match self {
            Method::Forward => "forward",
            Method::Guided => "gbp",
            Method::Deconvnet => "deconvnet",
            Method::Backprop => "backprop",
            Method::Occlusion => "occlusion",
            Method::FeatVis => "featvis",
        }
    }

    /// One method by its [`dir_name`](Self::dir_name).
    pub fn parse(name: &str) -> Result<Method, UnknownMethod> {
        let name = name.trim();
        Method::ALL
            .into_iter()
            .find(|m| m.dir_name() == name)
            .ok_or_else(|| UnknownMethod(name.to_string()))
    }

    /// A comma-separated list (`forward,gbp`); empty items are skipped.
    pub fn parse_list(list: &str) -> Result<Vec<Method>, UnknownMethod> {
        list.split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(Method::parse)
            .collect()
    }

    /// The reverse-pass rule of a gradient method (`None` for forward, occlusion and
    /// feature visualisation).
    pub fn gradient(self) -> Option<GradientRule> {
        match self {
            Method::Forward | Method::Occlusion | Method::FeatVis => None,
            Method::Guided => Some(GradientRule::Guided),
            Method::Deconvnet => Some(GradientRule::Deconvnet),
            Method::Backprop => Some(GradientRule::Backprop),
        }
    }
}

impl Method {
    /// Whether the method's images are RGB pictures of the input's size (gradient images
    /// and feature visualisations) rather than one map per filter.
    pub fn rgb_images(self) -> bool {
        self.gradient().is_some() || self == Method::FeatVis
    }

    /// Whether the method's images depend on the input (feature visualisations do not).
    pub fn depends_on_input(self) -> bool {
        self != Method::FeatVis
    }
}

impl From<GradientRule> for Method {
    fn from(rule: GradientRule) -> Self {
        match rule {
            GradientRule::Guided => Method::Guided,
            GradientRule::Deconvnet => Method::Deconvnet,
            GradientRule::Backprop => Method::Backprop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_rules_match() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.dir_name()), Ok(m));
            if let Some(rule) = m.gradient() {
                assert_eq!(Method::from(rule), m);
            }
        }
        assert_eq!(
            Method::parse_list(" forward, gbp ,,occlusion"),
            Ok(vec![Method::Forward, Method::Guided, Method::Occlusion])
        );
        assert_eq!(
            Method::parse_list("forward,gradcam"),
            Err(UnknownMethod("gradcam".into()))
        );
    }
}
