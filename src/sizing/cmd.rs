//! `kasm-db plan`: placeholder until the sizing core lands (issue 8).

use crate::cli::PlanArgs;
use crate::error::{Error, Result};
use crate::output::Outcome;

pub fn plan(_args: &PlanArgs) -> Result<Outcome> {
    Err(Error::failed(
        "`kasm-db plan` is not built yet (planned in issue 8); its flags are final",
    ))
}
