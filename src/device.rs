//! The compute device is a runtime choice: `auto`, `cpu` or `cuda:N`.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 when this build has CUDA and a GPU answers, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device \"{s}\": use auto, cpu, cuda or cuda:N")),
        }
    }
}

/// Written and read as its name (`"cpu"`, `"cuda:0"`), as settings files always held it.
impl serde::Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceChoice {
    /// Whether this choice runs on the CPU: asked for, or `auto` with no GPU that answers.
    pub fn is_cpu(self) -> bool {
        match self {
            Self::Cpu => true,
            Self::Auto => !cuda_available(),
            Self::Cuda(_) => false,
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Whether this build can use CUDA at all.
pub const fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

/// Whether a CUDA device answers (checked once; always false without the `cuda` feature).
pub fn cuda_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| cuda_compiled() && Device::new_cuda(0).is_ok())
}

/// The device to run on, and a message when the choice could not be honoured and the CPU is used
/// instead. Never fails: the CPU is always there.
pub fn resolve(choice: DeviceChoice) -> (Device, Option<String>) {
    let ordinal = match choice {
        DeviceChoice::Cpu => return (Device::Cpu, None),
        DeviceChoice::Auto if !cuda_compiled() => return (Device::Cpu, None),
        DeviceChoice::Auto => 0,
        DeviceChoice::Cuda(n) => n,
    };
    if !cuda_compiled() {
        return (
            Device::Cpu,
            Some(format!(
                "cuda:{ordinal} requested, but this toylens was built without CUDA \
                 (rebuild with --features cuda); using the CPU"
            )),
        );
    }
    match Device::new_cuda(ordinal) {
        Ok(device) => (device, None),
        Err(e) => {
            let reason = error_line(&e);
            (
                Device::Cpu,
                Some(format!(
                    "cuda:{ordinal} is not available ({reason}); using the CPU"
                )),
            )
        }
    }
}

/// Whether toylens follows a GPU's rules on the CPU too: none of its fused CPU ops (the GPU runs
/// candle's own ops instead) and matrix products only on operands cuBLAS accepts
/// ([`crate::matmul`]). The CPU tests switch it on to run, without a GPU, the code a GPU runs;
/// `TOYLENS_GPU_RULES=1` does the same for the CLI. Off by default.
pub fn gpu_rules() -> bool {
    static FROM_ENV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    GPU_RULES.load(std::sync::atomic::Ordering::Relaxed)
        || *FROM_ENV.get_or_init(|| std::env::var("TOYLENS_GPU_RULES").is_ok_and(|v| v == "1"))
}

static GPU_RULES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Switches [`gpu_rules`] on for the rest of this process (tests that emulate a GPU).
pub fn follow_gpu_rules() {
    GPU_RULES.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// What a candle error says, in one line: candle appends a backtrace to some errors, and the
/// first line says what happened.
pub fn error_line(e: &candle_core::Error) -> String {
    let text = e.to_string();
    text.lines()
        .next()
        .unwrap_or("unknown error")
        .trim()
        .to_string()
}

/// A short human name for a device.
pub fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:2".parse(), Ok(DeviceChoice::Cuda(2)));
        assert!(
            "tpu"
                .parse::<DeviceChoice>()
                .unwrap_err()
                .contains("unknown device")
        );
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cuda_request_falls_back_to_cpu_with_a_message() {
        let (device, note) = resolve(DeviceChoice::Cuda(0));
        if !cuda_available() {
            assert!(device.is_cpu());
            let note = note.expect("a fallback must say why");
            assert!(note.contains("using the CPU"), "{note}");
        } else {
            assert!(device.is_cuda() && note.is_none());
        }
        let (device, note) = resolve(DeviceChoice::Cpu);
        assert!(device.is_cpu() && note.is_none());
    }
}
