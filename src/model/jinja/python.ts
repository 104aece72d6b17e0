/**
 * Python's text forms of numbers and strings, as jinja2 prints values (`str()` and `repr()`) and as
 * `json.dumps` writes floats: chat templates are written and checked against Python.
 */

/** Python's `repr(float)`: the shortest text that reads back the same number, `2.0`, `1e-07`, `1e+16`. */
export function pythonFloat(value: number): string {
	if (Number.isNaN(value)) {
		return "nan";
	}
	if (!Number.isFinite(value)) {
		return value > 0 ? "inf" : "-inf";
	}
	if (value === 0) {
		return Object.is(value, -0) ? "-0.0" : "0.0";
	}
	// toExponential() with no argument gives the shortest round-trip digits, as Python's repr does.
	const [mantissa, exponentText] = value.toExponential().split("e");
	const exponent = Number(exponentText);
	const negative = mantissa.startsWith("-");
	const digits = mantissa.replace("-", "").replace(".", "");
	const sign = negative ? "-" : "";
	if (exponent < -4 || exponent >= 16) {
		const fraction = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
		const magnitude = String(Math.abs(exponent)).padStart(2, "0");
		return `${sign}${fraction}e${exponent < 0 ? "-" : "+"}${magnitude}`;
	}
	if (exponent < 0) {
		return `${sign}0.${"0".repeat(-exponent - 1)}${digits}`;
	}
	const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
	const fraction = digits.slice(exponent + 1);
	return `${sign}${whole}.${fraction || "0"}`;
}

/** `json.dumps` of a float: its repr, with JSON's names for the values JSON cannot hold. */
export function jsonFloat(value: number): string {
	if (Number.isNaN(value)) {
		return "NaN";
	}
	if (!Number.isFinite(value)) {
		return value > 0 ? "Infinity" : "-Infinity";
	}
	return pythonFloat(value);
}

const NOT_PRINTABLE = /[\p{C}\p{Z}]/u;

/** Python's `repr(str)`: single quotes unless the text holds one and no double quote; escapes as Python writes them. */
export function pythonStringRepr(text: string): string {
	const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
	let out = quote;
	for (const char of text) {
		if (char === quote || char === "\\") {
			out += "\\" + char;
		} else if (char === "\n") {
			out += "\\n";
		} else if (char === "\r") {
			out += "\\r";
		} else if (char === "\t") {
			out += "\\t";
		} else if (char !== " " && NOT_PRINTABLE.test(char)) {
			const code = char.codePointAt(0) as number;
			out +=
				code < 0x100
					? "\\x" + code.toString(16).padStart(2, "0")
					: code < 0x10000
						? "\\u" + code.toString(16).padStart(4, "0")
						: "\\U" + code.toString(16).padStart(8, "0");
		} else {
			out += char;
		}
	}
	return out + quote;
}
