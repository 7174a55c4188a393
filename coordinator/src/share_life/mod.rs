//! One owner for a share's life: create, join and end (revoke or expiry). Each step's
//! side effects happen here and nowhere else: the database row, what the sharer's and
//! joiners' streams hear, which relay pairs open or close, and the proxy's view of public
//! names (`public_shares`). The API handlers only translate HTTP.

mod create;
mod end;
mod join;
mod owner;

pub use create::create;
pub use end::{end_share, run_expiry};
pub use join::join;
pub use owner::{extend, revoke};
