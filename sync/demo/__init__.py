"""Demo ERP generator and its mapping files."""
