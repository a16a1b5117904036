CREATE TABLE IF NOT EXISTS papers (id INTEGER PRIMARY KEY, title TEXT NOT NULL, year INTEGER, topic TEXT, citations INTEGER);
DELETE FROM papers;
INSERT INTO papers (title, year, topic, citations) VALUES
  ('The Log: What every software engineer should know about real-time data', 2013, 'event sourcing', 950),
  ('In Search of an Understandable Consensus Algorithm', 2014, 'replication', 4200),
  ('ReAct: Synergizing Reasoning and Acting in Language Models', 2022, 'agents', 3100),
  ('Toolformer: Language Models Can Teach Themselves to Use Tools', 2023, 'agents', 1900),
  ('Dataflow: A Unified Model for Batch and Streaming', 2015, 'streams', 1300);
