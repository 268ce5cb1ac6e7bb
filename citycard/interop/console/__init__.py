"""The clearing console (清算控制台): clearing staff's and platform operators' own pages on the platform
site, beside the admin (docs/console.md). Views are thin over citycard.interop.selectors and services;
operators read, clearing staff also step cycles and record and resolve disputes."""
