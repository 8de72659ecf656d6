/**
 * Canonical text of an IP address, so every spelling of one address gets one
 * mask. Pure.
 *
 * @module
 */

import ipaddr from "ipaddr.js";

/** The longest IPv6 text (`ffff:…:255.255.255.255`) is 45 characters. */
const MAX_IP_TEXT = 45;

/** An address in canonical form, or why the text is not one. */
export type IpResult =
  | { readonly ok: true; readonly canonical: string; readonly version: 4 | 6 }
  | { readonly ok: false; readonly detail: string };

/**
 * Canonicalises an IPv4 or IPv6 address.
 *
 * IPv4 must be four decimal parts 0-255 without leading zeros (the forms
 * `010.1.1.1`, `0x7f.1`, `127.1` are refused: tools disagree on what they mean).
 * IPv6 becomes its RFC 5952 text (lower case, longest zero run compressed),
 * and an IPv4-mapped address (`::ffff:a.b.c.d` in any spelling) becomes the
 * IPv4 it maps. Zone ids (`fe80::1%eth0`) are refused: they name an interface
 * on one host, not an address.
 */
export function canonicalIp(text: string): IpResult {
  if (text.length > MAX_IP_TEXT) {
    return { ok: false, detail: `ip is longer than ${MAX_IP_TEXT} characters` };
  }
  if (!text.includes(":")) {
    if (ipaddr.IPv4.isValidFourPartDecimal(text)) {
      return { ok: true, canonical: text, version: 4 };
    }
    return {
      ok: false,
      detail:
        "ip is not an IPv4 address of four decimal parts 0-255 without leading zeros, nor IPv6",
    };
  }
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) {
    return { ok: false, detail: "ip has characters other than hex digits, ':' and '.'" };
  }
  // The WHATWG URL parser is a strict RFC 4291 parser (it refuses leading zeros
  // in an embedded IPv4 part) and serialises the RFC 5952 form. ipaddr.js alone
  // reads "::1.2.3.4" as IPv4-mapped, which it is not.
  let host: string;
  try {
    host = new URL(`http://[${text}]/`).hostname;
  } catch {
    return { ok: false, detail: "ip is not a valid IPv6 address" };
  }
  const compressed = host.slice(1, -1);
  const parsed = ipaddr.IPv6.parse(compressed);
  if (parsed.isIPv4MappedAddress()) {
    return { ok: true, canonical: parsed.toIPv4Address().toString(), version: 4 };
  }
  return { ok: true, canonical: compressed, version: 6 };
}
