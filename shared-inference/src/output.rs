//! What a model answers, by name, element type and shape: the one list the OIP metadata and
//! responses, KServe v1 predictions, file scoring's columns and the ONNX graph's outputs are all
//! built from.

use crate::schema::Task;

/// Regression: the prediction in the target's original units.
pub const PREDICTION: &str = "prediction";
/// Classification: the most probable class's name.
pub const LABEL: &str = "label";
/// Classification: every class's probability, in the model's class order.
pub const PROBABILITIES: &str = "probabilities";
/// File scoring writes one probability column per class, named this prefix and the class.
pub const PROBABILITY_COLUMN_PREFIX: &str = "prob_";

/// An output's element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    /// 32-bit floats: a regression prediction, class probabilities.
    Float32,
    /// UTF-8 text: a class label.
    Text,
}

impl OutputType {
    /// The Open Inference Protocol's name for it: `FP32` or `BYTES`.
    pub fn oip_datatype(self) -> &'static str {
        match self {
            OutputType::Float32 => "FP32",
            OutputType::Text => "BYTES",
        }
    }
}

/// One output of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSpec {
    /// [`PREDICTION`], [`LABEL`] or [`PROBABILITIES`].
    pub name: &'static str,
    /// The element type.
    pub datatype: OutputType,
    /// `[n_rows, n_classes]` when true, `[n_rows]` otherwise.
    pub per_class: bool,
}

impl OutputSpec {
    /// The shape for `n_rows` rows (`-1` for "any number") and `n_classes` classes:
    /// `[n_rows, n_classes]` for a per-class output, `[n_rows]` otherwise.
    pub fn shape(&self, n_rows: i64, n_classes: usize) -> Vec<i64> {
        if self.per_class { vec![n_rows, n_classes as i64] } else { vec![n_rows] }
    }
}

const REGRESSION: [OutputSpec; 1] = [OutputSpec { name: PREDICTION, datatype: OutputType::Float32, per_class: false }];
const CLASSIFICATION: [OutputSpec; 2] = [
    OutputSpec { name: LABEL, datatype: OutputType::Text, per_class: false },
    OutputSpec { name: PROBABILITIES, datatype: OutputType::Float32, per_class: true },
];

/// The outputs of a model for `task`, in the order they are returned.
pub fn outputs(task: Task) -> &'static [OutputSpec] {
    if task.is_classification() { &CLASSIFICATION } else { &REGRESSION }
}

/// The output names of a model for `task`.
pub fn output_names(task: Task) -> Vec<&'static str> {
    outputs(task).iter().map(|o| o.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_answers_one_value_and_classification_a_label_and_probabilities() {
        assert_eq!(output_names(Task::Regression), [PREDICTION]);
        for task in [Task::BinaryClassification, Task::MulticlassClassification] {
            assert_eq!(output_names(task), [LABEL, PROBABILITIES]);
            let shapes: Vec<Vec<i64>> = outputs(task).iter().map(|o| o.shape(-1, 3)).collect();
            assert_eq!(shapes, [vec![-1], vec![-1, 3]]);
        }
        assert_eq!(outputs(Task::Regression)[0].datatype.oip_datatype(), "FP32");
    }
}
