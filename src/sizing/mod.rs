//! The Kasm sizing guide's rules as pure arithmetic (issue 8). Nothing under `sizing/` does
//! I/O: the commands that need the database (`size`) live in `maintenance/`.

pub mod cmd;
