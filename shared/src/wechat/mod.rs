//! wechat (in progress).
