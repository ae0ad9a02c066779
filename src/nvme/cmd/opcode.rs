//! Opcodes of the NVMe commands (CDW0 bits 7:0), by name.
//!
//! Admin commands go to the admin queue (queue 0), I/O commands to an I/O queue: the
//! same byte means different commands on the two (`0x01` is Create I/O Submission Queue
//! on the admin queue and Write on an I/O queue). Values: NVMe Base Specification 1.4
//! Figure 139 (admin) and Figure 346 (NVM command set).
//!
//! ```
//! use physvec::nvme::opcode;
//! assert_eq!(opcode::io::READ, 0x02);
//! assert_eq!(opcode::admin::IDENTIFY, 0x06);
//! assert_eq!(opcode::io::name(0x01), Some("Write"));
//! assert_eq!(opcode::admin::name(0x01), Some("Create I/O Submission Queue"));
//! ```

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

/// Admin Command Set opcodes.
pub mod admin {
    /// Delete I/O Submission Queue.
    pub const DELETE_IO_SQ: u8 = 0x00;
    /// Create I/O Submission Queue.
    pub const CREATE_IO_SQ: u8 = 0x01;
    /// Get Log Page.
    pub const GET_LOG_PAGE: u8 = 0x02;
    /// Delete I/O Completion Queue.
    pub const DELETE_IO_CQ: u8 = 0x04;
    /// Create I/O Completion Queue.
    pub const CREATE_IO_CQ: u8 = 0x05;
    /// Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Abort.
    pub const ABORT: u8 = 0x08;
    /// Set Features.
    pub const SET_FEATURES: u8 = 0x09;
    /// Get Features.
    pub const GET_FEATURES: u8 = 0x0a;
    /// Asynchronous Event Request.
    pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;
    /// Namespace Management.
    pub const NAMESPACE_MANAGEMENT: u8 = 0x0d;
    /// Firmware Commit.
    pub const FIRMWARE_COMMIT: u8 = 0x10;
    /// Firmware Image Download.
    pub const FIRMWARE_IMAGE_DOWNLOAD: u8 = 0x11;
    /// Namespace Attachment.
    pub const NAMESPACE_ATTACHMENT: u8 = 0x15;
    /// Keep Alive.
    pub const KEEP_ALIVE: u8 = 0x18;
    /// Format NVM.
    pub const FORMAT_NVM: u8 = 0x80;

    /// The specification's name of an admin opcode this module knows.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::opcode::admin::name(0x06), Some("Identify"));
    /// assert_eq!(physvec::nvme::opcode::admin::name(0x7f), None);
    /// ```
    pub const fn name(opcode: u8) -> Option<&'static str> {
        Some(match opcode {
            DELETE_IO_SQ => "Delete I/O Submission Queue",
            CREATE_IO_SQ => "Create I/O Submission Queue",
            GET_LOG_PAGE => "Get Log Page",
            DELETE_IO_CQ => "Delete I/O Completion Queue",
            CREATE_IO_CQ => "Create I/O Completion Queue",
            IDENTIFY => "Identify",
            ABORT => "Abort",
            SET_FEATURES => "Set Features",
            GET_FEATURES => "Get Features",
            ASYNC_EVENT_REQUEST => "Asynchronous Event Request",
            NAMESPACE_MANAGEMENT => "Namespace Management",
            FIRMWARE_COMMIT => "Firmware Commit",
            FIRMWARE_IMAGE_DOWNLOAD => "Firmware Image Download",
            NAMESPACE_ATTACHMENT => "Namespace Attachment",
            KEEP_ALIVE => "Keep Alive",
            FORMAT_NVM => "Format NVM",
            _ => return None,
        })
    }
}

/// NVM Command Set (I/O) opcodes.
pub mod io {
    /// Flush.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
    /// Write Uncorrectable.
    pub const WRITE_UNCORRECTABLE: u8 = 0x04;
    /// Compare.
    pub const COMPARE: u8 = 0x05;
    /// Write Zeroes.
    pub const WRITE_ZEROES: u8 = 0x08;
    /// Dataset Management.
    pub const DATASET_MANAGEMENT: u8 = 0x09;
    /// Verify.
    pub const VERIFY: u8 = 0x0c;

    /// The specification's name of an I/O opcode this module knows.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::opcode::io::name(0x02), Some("Read"));
    /// ```
    pub const fn name(opcode: u8) -> Option<&'static str> {
        Some(match opcode {
            FLUSH => "Flush",
            WRITE => "Write",
            READ => "Read",
            WRITE_UNCORRECTABLE => "Write Uncorrectable",
            COMPARE => "Compare",
            WRITE_ZEROES => "Write Zeroes",
            DATASET_MANAGEMENT => "Dataset Management",
            VERIFY => "Verify",
            _ => return None,
        })
    }
}
