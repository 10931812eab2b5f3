/** The route error metadata and the code table live in src/common (controllers of every layer use them); re-exported for the document builder. */
export * from '../common/api-errors';
