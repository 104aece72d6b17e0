import { existsSync, statSync } from 'node:fs';

export const isFile = (path: string) => existsSync(path) && statSync(path).isFile();
export const isDirectory = (path: string) => existsSync(path) && statSync(path).isDirectory();
