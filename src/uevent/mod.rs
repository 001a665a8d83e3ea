//! Kernel uevents: the wire format, parsed without allocating.
//!
//! A kernel message on `NETLINK_KOBJECT_UEVENT` is `ACTION@DEVPATH\0` followed by
//! `KEY=VALUE\0` pairs (ACTION, DEVPATH and SUBSYSTEM first, SEQNUM last), with no netlink
//! header. [`Event::parse`] borrows every key and value from the buffer and
//! keeps at most [`MAX_VARS`] of them in a fixed array, so parsing never touches the heap. It is
//! strict: anything that is not exactly that shape is an error, never a panic.

pub mod libudev;
pub mod netlink;
pub mod record;

/// The kernel sends at most 64 variables in 2,048 bytes; we allow twice that for synthetic
/// events and recordings.
pub const MAX_VARS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Remove,
    Change,
    Move,
    Online,
    Offline,
    Bind,
    Unbind,
}

impl Action {
    pub fn parse(s: &[u8]) -> Option<Action> {
        Some(match s {
            b"add" => Action::Add,
            b"remove" => Action::Remove,
            b"change" => Action::Change,
            b"move" => Action::Move,
            b"online" => Action::Online,
            b"offline" => Action::Offline,
            b"bind" => Action::Bind,
            b"unbind" => Action::Unbind,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Change => "change",
            Action::Move => "move",
            Action::Online => "online",
            Action::Offline => "offline",
            Action::Bind => "bind",
            Action::Unbind => "unbind",
        }
    }
}

/// Why a message is not a uevent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    /// The first string has no `@`, or an empty side.
    BadHeader,
    UnknownAction,
    /// A variable without `=` or with an empty key.
    BadVariable,
    TooManyVariables,
    /// `ACTION=` or `DEVPATH=` disagrees with the header.
    Inconsistent,
    BadSeqnum,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParseError::Empty => "empty message",
            ParseError::BadHeader => "first string is not ACTION@DEVPATH",
            ParseError::UnknownAction => "unknown action",
            ParseError::BadVariable => "a variable is not KEY=VALUE",
            ParseError::TooManyVariables => "too many variables",
            ParseError::Inconsistent => "ACTION or DEVPATH disagrees with the header",
            ParseError::BadSeqnum => "SEQNUM is not a number",
        })
    }
}

/// Messages longer than this are refused (the kernel's are at most about 2 KiB), so that
/// variable positions fit in 16 bits.
pub const MAX_MESSAGE: usize = u16::MAX as usize;

/// One uevent, borrowing from the message it was parsed from. Variables are kept as positions
/// into the message (key start, `=`, value end), 6 bytes each, so that parsing initialises
/// less than a kilobyte and never allocates.
#[derive(Clone, Copy)]
pub struct Event<'a> {
    pub action: Action,
    pub devpath: &'a [u8],
    pub seqnum: Option<u64>,
    msg: &'a [u8],
    vars: [(u16, u16, u16); MAX_VARS],
    len: usize,
}

impl std::fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vars: Vec<String> = self
            .vars()
            .map(|(k, v)| format!("{}={}", k.escape_ascii(), v.escape_ascii()))
            .collect();
        write!(
            f,
            "{}@{} {vars:?}",
            self.action.as_str(),
            self.devpath.escape_ascii()
        )
    }
}

impl<'a> Event<'a> {
    /// Parses a kernel-format message (`ACTION@DEVPATH\0KEY=VALUE\0...`).
    pub fn parse(msg: &'a [u8]) -> Result<Event<'a>, ParseError> {
        if msg.len() > MAX_MESSAGE {
            return Err(ParseError::TooManyVariables);
        }
        let msg = msg.strip_suffix(b"\0").unwrap_or(msg);
        if msg.is_empty() {
            return Err(ParseError::Empty);
        }
        let header_end = memchr::memchr(0, msg).unwrap_or(msg.len());
        let header = &msg[..header_end];
        let at = memchr::memchr(b'@', header).ok_or(ParseError::BadHeader)?;
        let (action, devpath) = (&header[..at], &header[at + 1..]);
        if action.is_empty() || devpath.is_empty() {
            return Err(ParseError::BadHeader);
        }
        let action = Action::parse(action).ok_or(ParseError::UnknownAction)?;
        let mut event = Event {
            action,
            devpath,
            seqnum: None,
            msg,
            vars: [(0, 0, 0); MAX_VARS],
            len: 0,
        };
        let mut start = header_end + 1;
        while start <= msg.len() && header_end < msg.len() {
            let end = memchr::memchr(0, &msg[start..]).map_or(msg.len(), |e| start + e);
            let part = &msg[start..end];
            let eq = memchr::memchr(b'=', part).ok_or(ParseError::BadVariable)?;
            if eq == 0 {
                return Err(ParseError::BadVariable);
            }
            if event.len == MAX_VARS {
                return Err(ParseError::TooManyVariables);
            }
            event.vars[event.len] = (start as u16, (start + eq) as u16, end as u16);
            event.len += 1;
            start = end + 1;
        }
        event.check()?;
        Ok(event)
    }

    fn check(&mut self) -> Result<(), ParseError> {
        if let Some(a) = self.get(b"ACTION") {
            if a != self.action.as_str().as_bytes() {
                return Err(ParseError::Inconsistent);
            }
        }
        if let Some(d) = self.get(b"DEVPATH") {
            if d != self.devpath {
                return Err(ParseError::Inconsistent);
            }
        }
        if let Some(s) = self.get(b"SEQNUM") {
            let s = std::str::from_utf8(s).map_err(|_| ParseError::BadSeqnum)?;
            self.seqnum = Some(s.parse().map_err(|_| ParseError::BadSeqnum)?);
        }
        Ok(())
    }

    fn var(&self, i: usize) -> (&'a [u8], &'a [u8]) {
        let (start, eq, end) = self.vars[i];
        let msg: &'a [u8] = self.msg;
        (
            &msg[start as usize..eq as usize],
            &msg[eq as usize + 1..end as usize],
        )
    }

    /// The value of `key`, the first if it appears twice.
    pub fn get(&self, key: &[u8]) -> Option<&'a [u8]> {
        (0..self.len)
            .map(|i| self.var(i))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    pub fn vars(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        (0..self.len).map(|i| self.var(i))
    }

    pub fn modalias(&self) -> Option<&'a [u8]> {
        self.get(b"MODALIAS").filter(|m| !m.is_empty())
    }

    pub fn subsystem(&self) -> Option<&'a [u8]> {
        self.get(b"SUBSYSTEM")
    }

    /// The last component of the device path, udev's `KERNEL`.
    pub fn kernel_name(&self) -> &'a [u8] {
        self.devpath
            .rsplit(|&c| c == b'/')
            .next()
            .unwrap_or(self.devpath)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_messages() {
        let msg = b"add@/devices/pci0000:00/0000:00:1f.3\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:1f.3\0SUBSYSTEM=pci\0MODALIAS=pci:v00008086d0000A348sv00001028sd0000085Cbc04sc03i00\0SEQNUM=2417\0";
        let e = Event::parse(msg).unwrap();
        assert_eq!(e.action, Action::Add);
        assert_eq!(e.kernel_name(), b"0000:00:1f.3");
        assert_eq!(e.seqnum, Some(2417));
        assert_eq!(e.subsystem(), Some(&b"pci"[..]));
        assert!(e.modalias().unwrap().starts_with(b"pci:v00008086"));
    }

    #[test]
    fn malformed_messages_are_errors() {
        for (msg, err) in [
            (&b""[..], ParseError::Empty),
            (b"\0", ParseError::Empty),
            (b"add", ParseError::BadHeader),
            (b"add@", ParseError::BadHeader),
            (b"@/x", ParseError::BadHeader),
            (b"explode@/x", ParseError::UnknownAction),
            (b"add@/x\0NOEQUALS", ParseError::BadVariable),
            (b"add@/x\0=v", ParseError::BadVariable),
            (b"add@/x\0ACTION=remove", ParseError::Inconsistent),
            (b"add@/x\0DEVPATH=/y", ParseError::Inconsistent),
            (b"add@/x\0SEQNUM=12a", ParseError::BadSeqnum),
            (b"libudev\0\xfe\xed\xca\xfe", ParseError::BadHeader),
        ] {
            assert_eq!(
                Event::parse(msg).unwrap_err(),
                err,
                "{}",
                msg.escape_ascii()
            );
        }
        let mut many = b"add@/x".to_vec();
        for i in 0..=MAX_VARS {
            many.extend_from_slice(format!("\0K{i}=v").as_bytes());
        }
        assert_eq!(
            Event::parse(&many).unwrap_err(),
            ParseError::TooManyVariables
        );
    }
}
