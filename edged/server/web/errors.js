// edged's error-code table, fetched from the server (/api/errors), so that every code
// the page meets is explained the way docs/errors.md explains it.

export class ErrorTable {
  constructor(entries = []) {
    this.byCode = new Map(entries.map((e) => [e.code, e]));
  }

  static async load(url = "/api/errors") {
    try {
      const response = await fetch(url, { cache: "no-cache" });
      if (!response.ok) return new ErrorTable();
      return new ErrorTable((await response.json()).errors);
    } catch {
      return new ErrorTable();
    }
  }

  /** {code, name, meaning, remedy} (a bare entry for a code the table lacks). */
  describe(code) {
    return this.byCode.get(code) ?? { code, name: "UNKNOWN", meaning: "Unknown error.", remedy: "" };
  }

  /** One readable line: "1002050 KICKED_OUT: meaning What to do: remedy". */
  text(code, detail = "") {
    const e = this.describe(code);
    const more = detail && detail !== e.meaning ? ` (${detail})` : "";
    const remedy = e.remedy ? ` What to do: ${e.remedy}` : "";
    return `${e.code} ${e.name}: ${e.meaning}${more}${remedy}`;
  }
}
